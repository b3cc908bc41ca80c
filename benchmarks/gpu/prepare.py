"""Download, here, the wheels a bare GPU machine lacks for ``benchmarks/gpu/run.sh``, into ``.whl/``.

The lent GPU machine (see the device tool's KINDS.md) has Python 3.12 with torch, transformers,
triton, numpy, pyarrow, scipy, safetensors, tqdm and the like, and no network. grokviz needs
polars and rapidfuzz besides, the suite StringZilla's CUDA engine, and building grokviz's own
wheel there needs hatchling and its requirements. All are pinned here, downloaded for the
machine's Python and platform, and recompressed with LZMA (wheels are zip files; pip reads LZMA
entries like deflated ones, and the files inside are unchanged): one call may carry 64 MiB, the
working tree included, and polars alone is 40 MB deflated. polars is 1.33.1 for the same reason:
2.x moved its binary into a 54 MB ``polars-runtime-32`` wheel (31 MB recompressed), too much
beside a 23 MB working tree. grokviz asks for ``polars>=1.0``.

Run here (network: PyPI), from the repository root::

    python benchmarks/gpu/prepare.py                     # for the GPU machine: cp312, CUDA
    python benchmarks/gpu/prepare.py --cpu --python-version 3.11 --out /tmp/dry/.whl  # dry run

It prints the size of what one call would carry (this checkout's working tree plus the wheels)
against the 64 MiB limit, and fails above it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 64 * 2**20
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
# What the suite and grokviz's own build need beyond the GPU machine's image; one version each.
PACKAGES = [
    "polars==1.33.1",
    "rapidfuzz==3.14.6",
    "stringzilla==5.3.2",
    # building grokviz's wheel there (pyproject's build-system): hatchling and what it imports
    "hatchling==1.33.0",
    "packaging==26.4",
    "pathspec==1.1.1",
    "pluggy==1.7.0",
    "tomlkit==0.15.2",
    "trove-classifiers==2026.9.21.13",
]
STRINGZILLAS = {"cuda": "stringzillas-cuda==5.3.2", "cpu": "stringzillas-cpus==5.3.2"}


def download(packages: list[str], dest: Path, python_version: str) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", python_version, "--implementation", "cp", "-d", str(dest)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run([*cmd, *packages], check=True)


def recompress(src: Path, dst: Path) -> None:
    """The same wheel with every member LZMA-compressed (contents and RECORD unchanged)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_LZMA) as zout:
        for info in zin.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            member.external_attr = info.external_attr
            member.compress_type = zipfile.ZIP_LZMA
            zout.writestr(member, zin.read(info))


def tree_bytes(root: Path) -> int:
    """Bytes of what a call sends besides ``carry``: tracked and untracked-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    files = [root / name.decode() for name in listed if name]
    return sum(f.stat().st_size for f in files if f.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / ".whl")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's: 3.12")
    parser.add_argument("--cpu", action="store_true", help="stringzillas-cpus (a CPU dry run)")
    args = parser.parse_args(argv)
    packages = [*PACKAGES, STRINGZILLAS["cpu" if args.cpu else "cuda"]]
    with tempfile.TemporaryDirectory() as tmp:
        download(packages, Path(tmp), args.python_version)
        if args.out.exists():
            shutil.rmtree(args.out)
        args.out.mkdir(parents=True)
        for wheel in sorted(Path(tmp).glob("*.whl")):
            recompress(wheel, args.out / wheel.name)
            before, after = wheel.stat().st_size, (args.out / wheel.name).stat().st_size
            print(f"{wheel.name}: {before / 2**20:6.1f} MiB -> {after / 2**20:6.1f} MiB")
    wheels = sum(f.stat().st_size for f in args.out.glob("*.whl"))
    tree = tree_bytes(ROOT)
    total = wheels + (tree if args.out.resolve().parent == ROOT else 0)
    print(
        f"wheels {wheels / 2**20:.1f} MiB in {args.out}; working tree {tree / 2**20:.1f} MiB; "
        f"one call carries {(wheels + tree) / 2**20:.1f} MiB of {LIMIT / 2**20:.0f} MiB"
    )
    if total > LIMIT:
        print("too large for one call: carry fewer wheels or ignore more of the tree")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
