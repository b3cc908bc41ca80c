"""binder/ must build under repo2docker; no real build runs here, so check it against its rules.

repo2docker's rules checked: a ``binder/`` folder is used instead of the repository root; a
Dockerfile or environment.yml there would take precedence over requirements.txt and silently
skip our set-up; runtime.txt names ``python-X.Y``; postBuild is an executable script run from
the repository root after requirements.txt is installed.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_binder_folder_uses_the_requirements_path() -> None:
    assert BINDER.is_dir()
    shadowing = {"Dockerfile", "environment.yml", "Pipfile", "Project.toml", "install.R"}
    found = sorted(p.name for p in BINDER.iterdir() if p.name in shadowing)
    assert not found, f"{found} in binder/ would make repo2docker skip requirements.txt"
    assert (BINDER / "requirements.txt").is_file()


def test_runtime_matches_requires_python(pyproject: dict) -> None:
    runtime = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(\d+)\.(\d+)", runtime)
    assert match, f"runtime.txt must read 'python-X.Y', not {runtime!r}"
    version = f"{match[1]}.{match[2]}"
    assert SpecifierSet(pyproject["project"]["requires-python"]).contains(version)


def test_requirements_pin_cpu_torch_that_satisfies_the_package(pyproject: dict) -> None:
    lines = [
        ln.strip()
        for ln in (BINDER / "requirements.txt").read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    options = [ln for ln in lines if ln.startswith("-")]
    reqs = {Requirement(ln).name: Requirement(ln) for ln in lines if not ln.startswith("-")}
    assert "torch" in reqs, "Binder must pin torch, or pip pulls the CUDA build"
    (pin,) = list(reqs["torch"].specifier)
    assert pin.operator == "==" and pin.version.endswith("+cpu")
    assert any("whl/cpu" in opt for opt in options), "the CPU wheel index must be named"
    package_torch = next(
        Requirement(d) for d in pyproject["project"]["dependencies"] if d.startswith("torch")
    )
    assert package_torch.specifier.contains(pin.version.split("+")[0])


def test_postbuild_installs_this_package_with_the_lab_extra(pyproject: dict) -> None:
    post = BINDER / "postBuild"
    text = post.read_text()
    assert text.startswith("#!"), "postBuild needs a shebang"
    assert os.access(post, os.X_OK), "postBuild must be executable"
    match = re.search(r'pip install[^\n]*-e "?\.\[([\w,]+)\]"?', text)
    assert match, "postBuild must pip-install the repository itself"
    extras = set(match[1].split(","))
    assert extras <= set(pyproject["project"]["optional-dependencies"])
    assert "jupyterlab" in " ".join(pyproject["project"]["optional-dependencies"]["lab"])
