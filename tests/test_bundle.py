"""The shipped front-end bundle is built from the current js/ sources and works offline."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "js"
STATIC = ROOT / "grokviz" / "static"


def source_hash() -> str:
    """The hash js/build.mjs writes: sha256 over (path, NUL, bytes, NUL) of the sorted inputs."""
    files = [p for p in (JS / "src").rglob("*") if p.is_file()]
    files += [JS / "package-lock.json", JS / "build.mjs"]
    digest = hashlib.sha256()
    for rel in sorted(p.relative_to(JS).as_posix() for p in files):
        digest.update(rel.encode())
        digest.update(b"\0")
        digest.update((JS / rel).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


@pytest.mark.skipif(not (JS / "src").is_dir(), reason="js/ sources are not part of this install")
def test_bundle_is_built_from_current_sources() -> None:
    recorded = (STATIC / "SOURCE_HASH").read_text().strip()
    assert recorded == source_hash(), (
        "grokviz/static/widgets.js is older than js/ (SOURCE_HASH differs): run `make bundle` "
        "and commit grokviz/static/"
    )


def test_bundle_files_are_shipped() -> None:
    for name in ("widgets.js", "widgets.css", "require.js.gz", "html-manager-embed-amd.js.gz"):
        assert (STATIC / name).stat().st_size > 0, name


def test_bundle_loads_nothing_from_the_network() -> None:
    code = (STATIC / "widgets.js").read_text(encoding="utf-8")
    # No ES module imports left (everything is bundled) and no CDN address anywhere.
    assert not re.search(r"""\bimport\s*\(\s*["']""", code)
    assert not re.search(r"""\bfrom\s*["'](https?:)?//""", code)
    for cdn in ("cdn.jsdelivr.net", "unpkg.com", "esm.sh", "cdnjs"):
        assert cdn not in code
    # The bundle is an ES module whose default export anywidget calls.
    assert re.search(r"export\s*\{[^}]*as default", code)


def test_vendored_widget_manager_defines_the_modules_the_export_needs() -> None:
    manager = gzip.decompress((STATIC / "html-manager-embed-amd.js.gz").read_bytes()).decode()
    assert 'define("@jupyter-widgets/base"' in manager
    assert "@jupyter-widgets/html-manager" in manager
    require = gzip.decompress((STATIC / "require.js.gz").read_bytes()).decode()
    assert "requirejs" in require and "define.amd" in require
