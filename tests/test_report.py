"""``grokviz report``: one standalone offline page of a trace store (its browser test is in
tests/browser/test_report_browser.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from grokviz.cli import main
from grokviz.widgets import report as report_module

TOY = Path(__file__).resolve().parents[1] / "data" / "samples" / "toy"
ARGS = ["--samples-per-group", "4", "--n-pairs", "200", "--top-k", "2"]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("report") / "report.html"
    code = main(
        [
            "report",
            str(TOY / "trace"),
            "--accuracy",
            str(TOY / "accuracy.parquet"),
            "--out",
            str(out),
            *ARGS,
        ]
    )
    assert code == 0
    return out.read_text(encoding="utf-8")


def _state(html: str) -> dict:
    match = re.search(
        r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', html, re.S
    )
    assert match is not None
    return json.loads(match.group(1))["state"]


def test_the_page_is_standalone_and_holds_the_three_views_linked(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]*\bsrc=", page)  # every script inline
    assert not re.search(r"""(src|href)=["']https?://""", page)
    state = _state(page)
    views = {m["state"]["_view"]: m for m in state.values() if m["state"].get("_view")}
    assert set(views) == {"timeline", "pathway_diagram", "similarity_matrix"}
    checkpoints = json.loads((TOY / "run.json").read_text())["checkpoints"]
    for view in views.values():
        assert view["state"]["checkpoints"] == checkpoints
        assert view["state"]["checkpoint"] == checkpoints[-1]
        assert view["state"]["_palette"] == views["timeline"]["state"]["_palette"]
    # Every checkpoint is in the page, since no kernel can send the next one.
    assert views["similarity_matrix"]["state"]["_loaded"] == list(range(len(checkpoints)))
    # The timeline is linked to both views in the browser (jslink), so no kernel is needed.
    links = [m for m in state.values() if m["model_name"] == "LinkModel"]
    ids = {m["state"]["_view"]: k for k, m in state.items() if m["state"].get("_view")}
    ends = {(lk["state"]["source"][0], lk["state"]["target"][0]) for lk in links}
    assert ends == {
        (f"IPY_MODEL_{ids['timeline']}", f"IPY_MODEL_{ids['pathway_diagram']}"),
        (f"IPY_MODEL_{ids['timeline']}", f"IPY_MODEL_{ids['similarity_matrix']}"),
    }
    assert all(lk["state"]["source"][1] == lk["state"]["target"][1] == "checkpoint" for lk in links)
    for text in ("Correlation with accuracy", "What the analysis chose", "top-2 experts per layer"):
        assert text in page, text


def test_the_correlation_table_shows_every_column_correlate_returns(page: str) -> None:
    from grokviz import TraceStore, analyze
    from grokviz.metrics import correlate

    heads = re.search(r'data-testid="report-correlations".*?<thead><tr>(.*?)</tr>', page, re.S)
    assert heads is not None
    columns = re.findall(r"<th[^>]*>(.*?)</th>", heads.group(1))
    accuracy = pl.read_parquet(TOY / "accuracy.parquet")
    metrics = analyze(TraceStore.open(TOY / "trace"), top_k=2, n_pairs=200, progress=False)
    assert columns == correlate(metrics, accuracy).columns
    # Each domain against its own accuracy first; every pairing in the folded table below.
    first = page.split('data-testid="report-correlations"')[1].split("</table>")[0]
    assert (
        '<td class="text">add</td><td class="text">distance</td><td class="text">add</td>' in first
    )


def test_a_column_the_statistics_add_later_appears_without_a_change_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import grokviz.metrics as metrics

    real = metrics.correlate

    def with_a_control(*args: object, **kwargs: object) -> pl.DataFrame:
        return real(*args, **kwargs).with_columns(partial_r_step=pl.lit(-0.5), n_null=pl.lit(7))  # type: ignore[arg-type]

    monkeypatch.setattr(metrics, "correlate", with_a_control)
    out = report_module.write_report(
        TOY / "trace",
        tmp_path / "r.html",
        accuracy=pl.read_parquet(TOY / "accuracy.parquet"),
        top_k=2,
        per_group=2,
        n_pairs=100,
    )
    html = out.read_text(encoding="utf-8")
    assert "<th>partial_r_step</th>" in html and "<th>n_null</th>" in html
    assert "<td>-0.500</td>" in html and "<td>7</td>" in html


def test_bad_arguments_get_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(TOY / "trace"), "--out", str(tmp_path / "report.pdf")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "*.html" in err
    assert main(["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nowhere" in err and err.count("\n") == 0
    assert not (tmp_path / "r.html").exists()


def test_the_command_is_listed() -> None:
    from grokviz.cli import COMMANDS

    assert COMMANDS["report"][0] == "grokviz.cli._report"


def test_html_table_formats_numbers_and_text() -> None:
    table = report_module.html_table(
        pl.DataFrame({"group": ["a"], "r": [0.123456], "p": [1e-7], "n": [3]})
    )
    assert "<td>0.123</td>" in table and "<td>1.00e-07</td>" in table and "<td>3</td>" in table
    assert '<td class="text">a</td>' in table
