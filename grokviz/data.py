"""Where the shipped sample data lives: ``data/samples/`` of a grokviz checkout.

The data is not part of the installed wheel (it would bloat every install); notebooks run from a
checkout (locally, on Binder, or on Colab after the install cell clones the repository).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "GROKVIZ_DATA"


def sample_data_dir(*, start: str | os.PathLike[str] | None = None) -> Path:
    """Return the ``data/samples`` folder of the grokviz checkout in use.

    Looks at ``$GROKVIZ_DATA`` first, then walks up from ``start`` (default: the current
    directory) and from the installed package looking for ``data/samples``.

    Examples
    --------
    >>> from grokviz.data import sample_data_dir
    >>> (sample_data_dir() / "toy").is_dir()
    True
    """
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            msg = f"${ENV_VAR} points to {path}, which is not a folder; unset it or fix the path"
            raise FileNotFoundError(msg)
        return path
    origins = [Path(start or Path.cwd()).resolve(), Path(__file__).resolve().parent]
    for origin in origins:
        for folder in (origin, *origin.parents):
            candidate = folder / "data" / "samples"
            if candidate.is_dir():
                return candidate
    msg = (
        "cannot find grokviz's shipped data (data/samples/) above "
        f"{origins[0]} or the installed package. Run from a clone of the grokviz repository, "
        f"or set ${ENV_VAR} to its data/samples folder."
    )
    raise FileNotFoundError(msg)
