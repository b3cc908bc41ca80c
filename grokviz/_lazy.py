"""Lazy package attributes: a package lists ``name -> module`` and imports the module on first use.

This keeps ``import grokviz`` (and ``grokviz.toy``, ``grokviz.widgets``) fast: torch, transformers
and the widget stack load only when a name that needs them is first touched.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str,
    exports: Mapping[str, str],
    *,
    extras: Mapping[str, str] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package`` exporting ``exports`` lazily.

    ``extras`` maps an optional dependency's import name to the pip extra that installs it; a
    missing one then raises an error naming ``pip install "grokviz[extra]"``.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        try:
            value = getattr(importlib.import_module(module), name)
        except ModuleNotFoundError as exc:
            extra = (extras or {}).get(exc.name or "")
            if extra is None:
                raise
            msg = (
                f"{package}.{name} needs {exc.name}, which is not installed; "
                f'install it with: pip install "grokviz[{extra}]"'
            )
            raise ModuleNotFoundError(msg, name=exc.name) from exc
        # Cache it, so later lookups skip this function (and a submodule of the same name,
        # bound by the import above, does not shadow the exported object).
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
