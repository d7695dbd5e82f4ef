"""`dg dev` (the README's UI command) driven in headless Chromium: the asset graph, a materialisation launched from
the UI, its metadata; the servers' log has no deprecation or supersession warning.

The weather forecast's upstream assets are materialised through the CLI first (small forests and search, one process);
then `humidity_forecast_2021` is materialised by clicking "Materialize" on its page, and its plot and its
markdown table are looked at where a person would look at them. Screenshots go to
`.mlassets/test-output/test_ui/` (printed at the end).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlassets.stack.process import ManagedProcess
from mlassets_tests.conftest import OUTDATED, REPO, dagster_cli, dg_environ

GROUPS = {"iot", "susy", "fruits", "weather"}
UI_ASSET = "humidity_forecast_2021"
UPSTREAM = ("weather_observations,weather_features,humidity_xgboost_search,humidity_model_standalone,"
            "humidity_model_spark,humidity_model_xgboost,humidity_model_xgboost_spark,humidity_predictions,"
            "humidity_model_selection")
SMALL_FOREST = {"config": {"n_trees": 5, "max_depth": 5}}
SMALL_SEARCH = {"config": {"trials": 2, "folds": 2}}
SCREENSHOTS = REPO / ".mlassets" / "test-output" / "test_ui"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 180
RUN_TIMEOUT_MS = 240_000


@pytest.fixture
def chromium() -> str:
    """The Chromium binary: $MLASSETS_CHROMIUM, else `chromium` on PATH (Debian); fails naming how to get it."""
    path = os.environ.get("MLASSETS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not os.access(path, os.X_OK):
        found = f"no executable Chromium at {path}" if path else "Chromium is not installed"
        pytest.fail(f"{found}: `apt-get install chromium` as root (deploy/local/dev test does it when run as root), "
                    "or set MLASSETS_CHROMIUM to a Chromium/Chrome binary", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(base: str, query: str) -> dict:
    request = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


@pytest.fixture
def dagster_dev(test_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`dg dev` from the project root (the README's UI command) on a free port, the forecast's inputs materialised;
    yields the UI's address and the servers' log."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**dg_environ(), **test_env, "MLASSETS_LAKE_ROOT": str(tmp_path / "lake"), "DAGSTER_HOME": str(home)}
    # Before dagster dev, not beside it: two processes creating a fresh instance's SQLite tables at once collide.
    config = {"execution": {"config": {"in_process": {}}},
              "ops": {"humidity_model_standalone": SMALL_FOREST, "humidity_model_spark": SMALL_FOREST,
                      "humidity_xgboost_search": SMALL_SEARCH}}
    result = dagster_cli(["asset", "materialize", "-m", "mlassets.definitions", "--select", UPSTREAM,
                          "--config-json", json.dumps(config)], env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = ManagedProcess("dg-dev", tmp_path)
    server.start([str(Path(sys.executable).with_name("dg")), "dev", "-h", "127.0.0.1", "-p", str(port)], cwd=REPO,
                 env=env)
    try:
        # ready once the webserver serves the code location's asset nodes
        server.wait_ready(lambda: bool(graphql(base, "{ assetNodes { id } }")["assetNodes"]), START_TIMEOUT_S)
        yield base, server.log_file
    finally:
        server.stop()  # the whole process group: webserver, daemon, code servers, run workers


def test_ui_graph_materialisation_and_metadata(chromium: str, dagster_dev: tuple[str, Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, server_log = dagster_dev
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    shots: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        # A fresh instance greets the first visitor with a newsletter dialog; skip it whenever it covers the page.
        page.add_locator_handler(page.get_by_text("Join the Dagster community"),
                                 lambda: page.get_by_role("button", name="Skip").click())

        def metadata_row(key: str):
            """The row of the asset page's metadata table whose first cell is `key`."""
            return page.locator("tr").filter(has=page.locator("td:first-child", has_text=re.compile(rf"^\s*{key}\s*$")))

        def shot(name: str) -> None:
            shots.append(SCREENSHOTS / f"{len(shots) + 1:02d}-{name}.png")
            page.screenshot(path=shots[-1])

        try:
            # The global asset lineage: one collapsed node per group, and no other group (no asset left in "default").
            page.goto(f"{base}/asset-groups")
            group_nodes = page.locator("svg foreignObject.group")
            for group in sorted(GROUPS):
                expect(group_nodes.filter(has=page.get_by_text(group, exact=True))).to_have_count(1)
            expect(group_nodes).to_have_count(len(GROUPS))
            expect(page.get_by_text("fetching statuses")).to_have_count(0)
            shot("asset-graph")

            # Click "Materialize" on the asset's page, follow the toast to the run, wait for it to succeed.
            page.goto(f"{base}/assets/{UI_ASSET}")
            page.get_by_role("button", name=re.compile(r"\bMaterialize$")).click()
            toast = page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}$"))
            expect(toast).to_be_visible()
            run_prefix = toast.inner_text().split()[-1]
            page.get_by_role("link", name="View", exact=True).click()
            expect(page).to_have_url(re.compile(rf"/runs/{run_prefix}[0-9a-f-]{{28}}"))
            status = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
            expect(status).to_be_visible(timeout=RUN_TIMEOUT_MS)
            shot("ui-run")
            assert status.inner_text() == "Success", f"the run launched from the UI ended as {status.inner_text()}"

            # The asset's page now shows the run's metadata: the markdown table inline ...
            page.goto(f"{base}/assets/{UI_ASSET}")
            table = metadata_row("monthly_mean").locator(".dagster-markdown table")
            expect(table.locator("thead th")).to_have_text(["month", "humidity_forecast", "humidity_lower",
                                                            "humidity_upper"])
            expect(table.locator("tbody tr")).to_have_count(12)
            table.scroll_into_view_if_needed()
            shot("metadata-table")
            # ... and the plot, a PNG in markdown, behind "[Show Markdown]": it must decode to a real image.
            metadata_row("plot").get_by_text("[Show Markdown]").click()
            image = page.get_by_role("dialog").get_by_role("img", name="humidity forecast 2021")
            expect(image).to_be_visible()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
            width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert width > 500 and height > 300, (width, height)
            shot("metadata-plot")
        except Exception:
            shot("failure")
            raise
        finally:
            browser.close()
            print("screenshots:", *shots, sep="\n  ")
    # The UI's run is the asset's latest materialisation.
    latest = graphql(base, f'{{ assetOrError(assetKey: {{path: ["{UI_ASSET}"]}}) {{ ... on Asset {{ '
                           "assetMaterializations(limit: 1) { runId } } } }")
    assert latest["assetOrError"]["assetMaterializations"][0]["runId"].startswith(run_prefix)
    # `dg dev` and everything it started (webserver, daemon, code server, the UI's run) warned of nothing outdated
    text = server_log.read_text()
    assert "Serving dagster-webserver" in text, text[-3000:]
    assert not OUTDATED.search(text), "\n".join(line for line in text.splitlines() if OUTDATED.search(line))
