"""Column lineage of a join step, seen in the Dagster UI of a running `dagster dev`.

Dagster OSS has no column lineage graph (that view is a Dagster+ feature), and its asset page
hides `dagster/column_lineage`. The UI shows the entry itself in the run's event log: the
materialisation's `dagster/column_lineage` opens as the lineage Dagster stored, with the
upstream asset keys and columns. The asset page shows `osiris/column_lineage` (the same lineage
as a table) and the column descriptions from the pipeline file.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .conftest import DagsterDev

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
JOIN_OP = "e2e_lineage__director_films"


def _materialise_all(page: Any, dev: DagsterDev) -> str:
    """Click "Materialize all" on the pipeline's asset group; returns the finished run's id."""
    before = {r["runId"] for r in dev.runs()}
    page.goto(dev.url + "/locations/defs.py/asset-groups/e2e_lineage",
              wait_until="domcontentloaded")
    page.get_by_text("director-films", exact=True).first.wait_for(timeout=60_000)
    page.get_by_role("button", name=re.compile(r"Materialize all$")).click()
    run = dev.wait_for(lambda: next((r for r in dev.runs() if r["runId"] not in before), None),
                       60, "the UI to launch a run")
    finished = dev.wait_for(
        lambda: next((r for r in dev.runs() if r["runId"] == run["runId"]
                      and r["status"] in ("SUCCESS", "FAILURE", "CANCELED")), None),
        120, "the materialisation to finish")
    assert finished["status"] == "SUCCESS", finished
    return str(run["runId"])


def test_join_step_column_lineage_is_shown_in_the_ui(dagster_dev: DagsterDev,
                                                     tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="chromium-"), executable_path=CHROMIUM, headless=True,
            args=ARGS, viewport={"width": 1400, "height": 1500})
        try:
            page = ctx.new_page()
            run_id = _materialise_all(page, dagster_dev)

            # The run's event log, narrowed to the join step's materialisation: its
            # dagster/column_lineage entry opens the stored lineage.
            page.goto(f"{dagster_dev.url}/runs/{run_id}?logs=step:{JOIN_OP}"
                      "|type:ASSET_MATERIALIZATION", wait_until="domcontentloaded")
            page.get_by_text("dagster/column_lineage", exact=True).first.wait_for(
                timeout=60_000)
            page.get_by_text("[Show JSON]", exact=True).first.click()
            dialog = page.get_by_role("dialog")
            dialog.wait_for(timeout=30_000)
            dialog.get_by_text("columnDeps", exact=False).first.wait_for(timeout=30_000)
            shown = json.loads(_json_text(dialog.inner_text()))
            by_column = {entry["columnName"]: sorted(
                ("/".join(dep["assetKey"]["path"]), dep["columnName"])
                for dep in entry["columnDeps"]) for entry in shown}
            assert by_column == {
                "director": [("e2e-lineage/directors", "name")],
                "nationality": [("e2e-lineage/directors", "nationality")],
                "films": [],
                "box_office": [("e2e-lineage/movies", "box_office_usd")],
            }
            page.wait_for_function(_FULLY_SHOWN, arg="[role=dialog]")  # opening transition
            lineage_png = tmp_path / "join-column-lineage-run-log.png"
            dialog.screenshot(path=str(lineage_png))
            print(f"screenshot of the column lineage in the run log: {lineage_png}")

            # The asset page: the readable lineage and the described columns.
            page.goto(dagster_dev.url + "/assets/e2e-lineage/director-films",
                      wait_until="domcontentloaded")
            page.get_by_text("osiris/column_lineage", exact=True).first.wait_for(
                timeout=60_000)
            described = page.locator("tr", has=page.get_by_text("director", exact=True))
            described.get_by_text("Name of the director", exact=True).wait_for(timeout=30_000)
            row = page.locator("tr", has=page.get_by_text("osiris/column_lineage", exact=True))
            row.scroll_into_view_if_needed()
            text = row.inner_text()
            for shown in ("e2e-lineage/directors", "name", "nationality",
                          "e2e-lineage/movies", "box_office_usd", "no upstream column"):
                assert shown in text, (shown, text)
            asset_png = tmp_path / "join-asset-page.png"
            page.screenshot(path=str(asset_png))
            print(f"screenshot of the join asset's page: {asset_png}")
        finally:
            ctx.close()


_FULLY_SHOWN = """(selector) => {
    const el = document.querySelector(selector);
    if (!el) return false;
    for (let node = el; node instanceof Element; node = node.parentElement) {
        const style = getComputedStyle(node);
        if (style.opacity !== "1" || (style.transform !== "none" &&
                                      style.transform !== "matrix(1, 0, 0, 1, 0, 0)")) {
            return false;
        }
    }
    return true;
}"""


def _json_text(text: str) -> str:
    """The JSON array in the dialog's text (the dialog also shows its title and buttons)."""
    start, end = text.find("["), text.rfind("]")
    assert 0 <= start < end, text
    return text[start:end + 1]
