"""The main run's steps: a failed asset is named with its cause, and only what depends on it is skipped."""

import os
from pathlib import Path

import pytest

from mlassets.main_run import Console, materialize_steps
from mlassets_tests.fixtures import failing_defs


def test_a_failed_asset_stops_only_what_depends_on_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "home").mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    console = Console(tmp_path / "main.log")
    outcome = materialize_steps(failing_defs.defs, failing_defs.__name__, env, console)
    assert set(outcome.materialized) == {"good", "independent", "daily_after_good"}
    assert list(outcome.failed) == ["bad"]
    assert outcome.failed["bad"] == "ValueError: corrupt row 7 in the input"
    assert outcome.skipped == {"after_bad", "daily_after_bad"}
    assert not outcome.ok
    out = capsys.readouterr().out
    assert "bad" in out and "FAILED  ValueError: corrupt row 7 in the input" in out
    assert f"full traceback: {tmp_path / 'main.log'}" in out
    assert "daily_after_bad" in out and "skipped" in out
    # the terminal gets one line per asset; Dagster's event stream and warnings stay in the log
    assert "DEBUG" not in out and "STEP_SUCCESS" not in out
    log = (tmp_path / "main.log").read_text()
    assert 'raise ValueError("corrupt row 7 in the input")' in log  # the whole traceback


def test_a_second_run_keeps_what_is_up_to_date_and_reruns_what_changed(tmp_path: Path) -> None:
    from mlassets_tests.fixtures import versioned_defs

    (tmp_path / "home").mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "FIXTURE_SOURCE_VERSION": "a"}
    console = Console(tmp_path / "main.log")

    def run(everything: bool = False) -> tuple[set[str], set[str]]:
        outcome = materialize_steps(versioned_defs.defs, versioned_defs.__name__, env, console, everything)
        assert outcome.ok
        return set(outcome.materialized), outcome.up_to_date

    everything_ran = ({"source", "model", "stream", "constant"}, set())
    assert run() == everything_ran
    assert run() == ({"source", "stream"}, {"model", "constant"})
    assert run(everything=True) == everything_ran
    env["FIXTURE_SOURCE_VERSION"] = "b"  # the data changed: the model is stale
    assert run() == ({"source", "model", "stream"}, {"constant"})


def test_a_failed_blocking_check_step_stops_what_reads_its_asset_in_later_steps(tmp_path: Path) -> None:
    from mlassets_tests.fixtures import blocking_defs

    (tmp_path / "home").mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    outcome = materialize_steps(blocking_defs.defs, blocking_defs.__name__, env, Console(tmp_path / "main.log"))
    assert ("model", "model_intact", False, "ERROR") in outcome.checks
    assert outcome.failed == {"model": "model: model_intact"}  # the last line of DagsterAssetCheckFailedError
    assert outcome.skipped == {"daily_scores"}
    assert "unrelated" in outcome.materialized and not outcome.ok


def test_the_projects_home_follows_the_checked_in_dagster_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlassets import main_run
    from mlassets.paths import PROJECT_ROOT

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # written by an older checkout
    monkeypatch.setattr(main_run, "DAGSTER_HOME", home)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main_run._dagster_env()["DAGSTER_HOME"] == str(home)
    assert (home / "dagster.yaml").read_bytes() == (PROJECT_ROOT / "dagster.yaml").read_bytes()

    own = tmp_path / "own"
    own.mkdir()
    (own / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(own))
    main_run._dagster_env()
    assert (own / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"  # the user's own home is theirs
