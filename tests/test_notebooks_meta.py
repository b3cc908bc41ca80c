"""The notebooks open on Colab and Binder and run in a small mode; nbval runs them (see Makefile).

These checks cover what nbval cannot: the badges, the set-up cell, and that the README links every
notebook.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_suite_has_the_four_notebooks() -> None:
    names = {p.stem.split("_", 1)[1] for p in NOTEBOOKS}
    assert {"quickstart", "grokking_101", "reproducing_the_paper", "your_own_model"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_badges_and_a_setup_cell(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    first = book.cells[0].source
    assert (
        f"colab.research.google.com/github/grokviz/grokviz/blob/main/notebooks/{path.name}" in first
    )
    assert f"urlpath=lab/tree/notebooks/{path.name}" in first
    setup = next(c.source for c in book.cells if c.cell_type == "code")
    # On Colab the first code cell clones and installs grokviz; it reads the small-mode switch.
    assert '"google.colab" in sys.modules' in setup
    assert "pip" in setup and "install" in setup
    assert 'os.environ.get("GROKVIZ_SMALL")' in setup


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_badge_images_are_shipped_and_the_links_go_out(path: Path) -> None:
    """Opening a notebook fetches nothing: its badge images are files of the repository."""
    import re

    book = nbformat.read(path, as_version=4)
    images = [
        src
        for cell in book.cells
        if cell.cell_type == "markdown"
        for src in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", cell.source)
    ]
    assert len(images) == 2, images
    for src in images:
        assert not re.match(r"https?://", src), f"{path.name} fetches {src}"
        assert (path.parent / src).resolve().is_file(), src
    first = book.cells[0].source
    assert (
        "](https://colab.research.google.com/github/grokviz/grokviz/blob/main/notebooks/" in first
    )
    assert "](https://mybinder.org/v2/gh/grokviz/grokviz/main?urlpath=lab/tree/notebooks/" in first


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_charts_render_offline(path: Path) -> None:
    """An altair chart in a notebook is drawn by the offline renderer (no Vega from a CDN)."""
    book = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in book.cells if c.cell_type == "code")
    if "alt.Chart(" in code:
        assert 'alt.renderers.enable("jupyter", offline=True)' in code, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_linked_from_the_readme(path: Path) -> None:
    assert f"(notebooks/{path.name})" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_never_downloads_unless_asked(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in book.cells[2:] if c.cell_type == "code")
    for call in (
        "from_pretrained(",
        "hf_hub_download",
        "snapshot_download",
        "urlopen",
        "requests.",
    ):
        assert call not in code, f"{path.name} downloads at run time via {call}"


def test_grokking_101_builds_its_full_mode_config() -> None:
    """nbval runs the small mode only, so the full mode's live-training config (what Binder and
    Colab users run) is built here: a short prefix of the shipped run with valid checkpoints."""
    from grokviz.toy.arithmetic.train import PRESETS

    book = nbformat.read(ROOT / "notebooks" / "02_grokking_101.ipynb", as_version=4)
    cell = next(c.source for c in book.cells if c.cell_type == "code" and "config =" in c.source)
    scope: dict[str, object] = {"SMALL": False}
    exec(compile(cell, "02_grokking_101.ipynb", "exec"), scope)
    config = scope["config"]
    full = PRESETS["default"]
    assert config.steps < full.steps  # type: ignore[attr-defined]
    assert config.schedule()[-1] == config.steps  # type: ignore[attr-defined]
    assert config.operations == full.operations and config.lr == full.lr  # type: ignore[attr-defined]
