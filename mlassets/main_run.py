"""The README's main run: the stack, the Spark jars, every asset step by step, and a summary a person can read."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dagster import AssetKey

from mlassets.environment_choice import DEFAULT_ENVIRONMENT, choose_environment
from mlassets.jobs import DATASETS_RESOURCE
from mlassets.paths import DAGSTER_HOME, LOG_DIR, PROJECT_ROOT

POLL_S = 1.0
# The figures the closing summary shows: (asset, metadata key, label).
HEADLINES = (
    ("susy_evaluation_summary", "accuracy", "SUSY held-out accuracy"),
    ("susy_evaluation_summary", "auc", "SUSY held-out AUC"),
    ("humidity_2020q4_metrics", "selected_model", "humidity model (chosen on validation)"),
    ("humidity_2020q4_metrics", "selected_2020q4_mse", "humidity 2020Q4 MSE"),
    ("fruit_pca", "explained_variance_total", "fruit PCA explained variance"),
    ("inference_records", "images_per_second", "IoT drain images/s"),
    ("cifar_classifier", "held_out_accuracy", "CIFAR classifier held-out accuracy"),
)


class Console:
    """Lines for the person at the terminal; each is also written, timestamped, to the full log."""

    def __init__(self, log_file: Path) -> None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = log_file
        self.log: IO[str] = open(log_file, "a", buffering=1)

    def say(self, text: str = "") -> None:
        """Print a line and log it."""
        print(text, flush=True)
        self.note(text)

    def note(self, text: str) -> None:
        """Write a line to the log only."""
        self.log.write(f"{dt.datetime.now():%H:%M:%S} | {text}\n")

    def skipped(self, asset: str) -> None:
        """The line of an asset not run because something upstream failed."""
        self.say(f"  {asset:<38}    skipped  an upstream asset failed")

    def phase(self, name: str, seconds: float, note: str = "") -> None:
        """One line for a finished phase with its elapsed time."""
        self.say(f"  {name:<38} {seconds:7.1f} s{'  ' + note if note else ''}")


@dataclass
class Outcome:
    """What the steps did: assets materialised or failed, check results, and why each failure happened."""

    materialized: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)
    checks: list[tuple[str, str, bool, str]] = field(default_factory=list)  # asset, check, passed, severity
    partitions: dict[str, str] = field(default_factory=dict)  # the last partition each partitioned asset ran
    up_to_date: set[str] = field(default_factory=set)  # not run again: same code version and inputs

    @property
    def failed_checks(self) -> list[tuple[str, str, bool, str]]:
        return [c for c in self.checks if not c[2]]

    @property
    def ok(self) -> bool:
        """True when nothing failed: no asset, and no check of ERROR severity."""
        return not self.failed and not self.skipped and all(c[3] != "ERROR" for c in self.failed_checks)


def run_main(environment: str, everything: bool = False) -> int:
    """Start the stack, resolve the Spark jars, materialise every asset, print the summary; 0 when all went well."""
    started = time.monotonic()
    choose_environment(environment)  # the definitions loaded here and in every `dagster` command bind it
    console = Console(LOG_DIR / f"main-{dt.datetime.now():%Y%m%d-%H%M%S}.log")
    _warnings_to_log(console)
    console.say(f"mlassets main run, environment {environment!r}; full log: {console.log_file}")
    from mlassets import definitions
    from mlassets.stack import LocalStack, StackSettings

    if definitions.ENVIRONMENT != environment:
        raise RuntimeError(f"this process loaded the definitions of {definitions.ENVIRONMENT!r} already")
    defs = definitions.defs
    resources = defs.resources  # the environment is loaded once, by the definitions
    if environment == DEFAULT_ENVIRONMENT:
        console.say("local stack:")
        LocalStack(StackSettings.from_env()).up(report=console.phase)
    console.say("Spark jars:")
    _resolve_spark_jars(resources["spark"].spark_config, environment, console)
    env = _dagster_env()
    outcome = materialize_steps(defs, "mlassets.definitions", env, console, everything)
    _summary(console, outcome, resources, time.monotonic() - started, env["DAGSTER_HOME"])
    return 0 if outcome.ok else 1


def materialize_steps(defs: Any, module: str, env: dict[str, str], console: Console,
                      everything: bool = True) -> Outcome:
    """Every asset of `defs`, one `dagster asset materialize` per step; what fails stops only what depends on it.

    Unless `everything`, an asset that is up to date is not run again (see `_up_to_date`).
    """
    from dagster import DagsterInstance

    from mlassets.jobs import main_steps

    graph = defs.resolve_asset_graph()
    steps = main_steps(graph)
    outcome = Outcome()
    for number, step in enumerate(steps, 1):
        todo, blocked, current = [], [], []
        with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            fresh = set() if everything else _up_to_date(instance, graph, step)
        for asset in (k.to_user_string() for k in step.assets):  # in dependency order
            parents = {p.to_user_string() for p in graph.get(AssetKey.from_user_string(asset)).parent_keys}
            if _upstream_failed(graph, asset, outcome):
                blocked.append(asset)
                outcome.skipped.add(asset)
            elif asset in fresh and not parents & set(todo):
                current.append(asset)
            else:
                todo.append(asset)
        where = "" if step.partitions is None else f", partitions {step.partitions[0]}...{step.partitions[1]}"
        console.say(f"step {number}/{len(steps)}: {len(todo)} assets{where}")
        for asset in blocked:
            console.skipped(asset)
        for asset in current:
            console.say(f"  {asset:<38}    up to date (same code version and inputs)")
        outcome.up_to_date.update(current)
        if todo:
            _run_step(step.cli_args(module=module, selection=todo), todo, graph, env, console, outcome)
        if step.partitions is not None:
            outcome.partitions.update({asset: step.partitions[1] for asset in todo})
    return outcome


def _up_to_date(instance: Any, graph: Any, step: Any) -> set[str]:
    """The step's unpartitioned assets with a code version whose last materialisation used today's code and inputs.

    Assets without a code version (the streams, which read what is new on a topic) always run, and so do
    partitioned ones and the readers of the `datasets` files, which may change under the same code: those run in a
    step of their own first and record the files' content as their data version.
    """
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._time import get_current_datetime

    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                          instance=instance, asset_graph=graph)
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    return {key.to_user_string() for key in step.assets
            if graph.get(key).code_version is not None and not graph.get(key).is_partitioned
            and DATASETS_RESOURCE not in graph.get(key).assets_def.required_resource_keys
            and resolver.get_status(key) == StaleStatus.FRESH}


def _warnings_to_log(console: Console) -> None:
    # Dagster's Beta/Supersession warnings fire at every definitions load: the log keeps them, the terminal not.
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: console.note(
        f"{category.__name__}: {message} ({filename}:{lineno})")


def _dagster_env() -> dict[str, str]:
    """The environment of the `dagster` commands: the project's instance, with its dagster.yaml."""
    env = {**os.environ}
    env.setdefault("DAGSTER_HOME", str(DAGSTER_HOME))
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    instance_yaml, project_yaml = home / "dagster.yaml", PROJECT_ROOT / "dagster.yaml"
    # The project's own home follows the checked-in settings (pools, retries) as they change; a DAGSTER_HOME the user
    # chose keeps its dagster.yaml once written.
    if not instance_yaml.exists() or (home.resolve() == DAGSTER_HOME.resolve()
                                      and instance_yaml.read_bytes() != project_yaml.read_bytes()):
        shutil.copy(project_yaml, instance_yaml)
    return env


def _resolve_spark_jars(spark_config: dict[str, Any], environment: str, console: Console) -> None:
    """Download the session's packages once, before several runs could start Spark (and Ivy) at the same time."""
    packages = [p for p in str(spark_config.get("spark.jars.packages", "")).split(",") if p]
    ivy = Path(str(spark_config.get("spark.jars.ivy", Path.home() / ".ivy2")))
    jars = [ivy / "jars" / f"{group}_{artifact}-{version}.jar"
            for group, artifact, version in (p.split(":") for p in packages)]
    if all(jar.exists() for jar in jars):
        console.phase(", ".join(j.name for j in jars) or "no packages", 0.0, "cached")
        return
    t0 = time.monotonic()
    code = ("from mlassets.environments import load_environment; "
            f"load_environment({environment!r})['spark'].spark_session.stop()")
    result = subprocess.run([sys.executable, "-c", code], stdout=console.log, stderr=subprocess.STDOUT,
                            cwd=PROJECT_ROOT)
    if result.returncode:
        console.say(f"  resolving {', '.join(packages)} failed (exit {result.returncode}); see {console.log_file}")
        raise SystemExit(1)
    console.phase(f"{len(packages)} packages into {ivy}", time.monotonic() - t0, "downloaded")


def _upstream_failed(graph: Any, asset: str, outcome: Outcome) -> bool:
    bad = set(outcome.failed) | outcome.skipped
    return any(a.to_user_string() in bad for a in graph.get(AssetKey.from_user_string(asset)).parent_keys)


def _run_step(cli_args: list[str], assets: list[str], graph: Any, env: dict[str, str], console: Console,
              outcome: Outcome) -> None:
    """One `dagster asset materialize` run, its output in the log, a line per asset and check as they end."""
    from dagster import DagsterInstance, RunsFilter

    argv = [str(Path(sys.executable).with_name("dagster")), *cli_args]
    console.note("$ " + " ".join(argv))
    launched = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=console.log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        run_id, cursor, steps = None, None, StepEvents(graph)
        while True:
            done = proc.poll() is not None
            if run_id is None:
                runs = instance.get_runs(filters=RunsFilter(created_after=launched), limit=1)
                run_id = runs[0].run_id if runs else None
            if run_id is not None:
                connection = instance.get_records_for_run(run_id, cursor=cursor)
                cursor = connection.cursor
                for record in connection.records:
                    steps.add(record.event_log_entry, console, outcome)
            if done:
                break
            time.sleep(POLL_S)
    missing = [a for a in assets if a not in outcome.materialized and a not in outcome.failed]
    if proc.returncode and not steps.failures:
        reason = f"`dagster asset materialize` exited {proc.returncode} before the run started"
        for asset in missing:
            outcome.failed[asset] = reason
        console.say(f"  {reason}; see {console.log_file}")
    else:
        outcome.skipped.update(a for a in missing if a not in outcome.failed)
        for asset in missing:
            console.skipped(asset)
    console.phase(f"step total ({'run ' + run_id[:8] if run_id else 'no run'})", time.monotonic() - t0)


class StepEvents:
    """Turns a run's events into the console's lines: an asset when materialised, a check, a failure's cause."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.started: dict[str, float] = {}
        self.partitions: dict[str, int] = {}
        self.failures = 0

    def add(self, entry: Any, console: Console, outcome: Outcome) -> None:
        from dagster import DagsterEventType

        event = entry.dagster_event
        if event is None:
            return
        kind = event.event_type
        if kind == DagsterEventType.STEP_START:
            self.started[event.step_key] = entry.timestamp
        elif kind == DagsterEventType.ASSET_MATERIALIZATION:
            asset = event.asset_key.to_user_string()
            count = self.partitions[asset] = self.partitions.get(asset, 0) + 1
            seconds = entry.timestamp - self.started.get(event.step_key, entry.timestamp)
            outcome.materialized[asset] = seconds
            if event.partition is None or count == 1:
                console.phase(asset, seconds, "" if event.partition is None else f"partition {event.partition}")
        elif kind == DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.event_specific_data
            severity = check.severity.value
            outcome.checks.append((check.asset_key.to_user_string(), check.check_name, check.passed, severity))
            state = "passed" if check.passed else f"FAILED ({severity})"
            console.say(f"    check {check.check_name} {state}")
        elif kind == DagsterEventType.STEP_FAILURE:
            self.failures += 1
            error = event.step_failure_data.error
            cause = _one_line(error.cause.message if error and error.cause else error.message if error else "")
            for asset in _step_assets(self.graph, event.step_key):
                outcome.failed[asset] = cause
                console.say(f"  {asset:<38} FAILED  {cause}")
            console.say(f"    full traceback: {console.log_file}")


def _step_assets(graph: Any, step_key: str) -> Iterable[str]:
    """The assets a failed step was to materialise (its step key names the asset or the multi-asset op), or whose
    blocking check it ran (an `@asset_check` step: its asset counts as failed, so later steps skip what reads it)."""
    keys = [k.to_user_string() for k in graph.get_all_asset_keys()
            if graph.get(k).is_materializable and graph.get(k).assets_def.node_def.name == step_key]
    checked = [k.asset_key.to_user_string() for k in graph.asset_check_keys
               if graph.assets_def_for_key(k).node_def.name == step_key]
    return keys or checked or [step_key]


def _one_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "unknown error")[:200]


def _summary(console: Console, outcome: Outcome, resources: dict[str, Any], seconds: float,
             dagster_home: str) -> None:
    """The closing lines: what was materialised, the checks, the headline figures and the UI command."""
    from dagster import DagsterInstance

    console.say()
    console.say(f"summary ({seconds / 60:.1f} min): {len(outcome.materialized)} assets materialised, "
                f"{len(outcome.up_to_date)} up to date, {len(outcome.failed)} failed, {len(outcome.skipped)} skipped; checks "
                f"{sum(c[2] for c in outcome.checks)} passed, {len(outcome.failed_checks)} failed")
    for asset, cause in outcome.failed.items():
        console.say(f"  FAILED  {asset}: {cause}")
    for asset in sorted(outcome.skipped):
        console.say(f"  skipped {asset} (upstream failed)")
    for asset, check, _, severity in outcome.failed_checks:
        console.say(f"  check failed ({severity}): {asset} {check}")
    with DagsterInstance.from_config(dagster_home) as instance:
        for asset, key, label in HEADLINES:
            if asset not in outcome.materialized and asset not in outcome.up_to_date:
                continue
            entry = instance.get_latest_materialization_event(AssetKey(asset))
            value = entry.asset_materialization.metadata.get(key) if entry and entry.asset_materialization else None
            if value is not None:
                shown = value.value
                console.say(f"  {label:<42} {shown:.4g}" if isinstance(shown, float) else f"  {label:<42} {shown}")
    _producer_table(console, outcome, resources)
    console.say(f"full log: {console.log_file}")
    console.say("open the UI on these results (`dg` reads pyproject.toml, so it runs from the project root):")
    console.say(f"  cd {PROJECT_ROOT} && DAGSTER_HOME={dagster_home} {Path(sys.executable).with_name('dg')} dev")


def _producer_table(console: Console, outcome: Outcome, resources: dict[str, Any]) -> None:
    """The day's per-producer error table from the lake."""
    from mlassets.metadata import markdown_table

    if "producer_error_counts" not in outcome.materialized:
        return
    day = outcome.partitions["producer_error_counts"]
    table = resources["lake"].read_parquet("producer_error_counts", day)
    console.say(f"  wrong inferences per producer on {day} (UTC):")
    for line in markdown_table(table).splitlines():
        console.say(f"    {line}")
