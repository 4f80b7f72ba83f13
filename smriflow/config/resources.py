"""Where the packaged YAML files live, in an installed wheel and in a source checkout.

The packaged workflows (``workflows/*.yml``) and execution configs (``configs/*.yml``) sit at the top of the
repository, where users read them. The wheel ships them inside the package as ``smriflow/data/<kind>/``
(``[tool.hatch.build.targets.wheel.force-include]`` in ``pyproject.toml``); an editable install has no such
copy, and reads the repository folders instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = ["PackagedKind", "packaged_dir"]

PackagedKind = Literal["workflows", "configs"]

_PACKAGE_DIR = Path(__file__).parents[1]  # the folder of smriflow/__init__.py
_KINDS = ("workflows", "configs")


def packaged_dir(kind: PackagedKind) -> Path:
    """Return the folder that holds the packaged YAML files of one kind.

    Parameters
    ----------
    kind : {"workflows", "configs"}
        ``"workflows"`` for the YAML workflow specs, ``"configs"`` for the execution configs.

    Returns
    -------
    Path
        ``smriflow/data/<kind>`` when it exists (an installed wheel), else the repository's top-level
        ``<kind>`` folder (an editable install or a source checkout). The folder may be missing in a broken
        installation; callers report that when they list or open files in it.

    Raises
    ------
    ValueError
        When ``kind`` is not one of the two kinds.
    """
    if kind not in _KINDS:
        raise ValueError(f"'kind' must be one of {set(_KINDS)}. {kind!r} was provided.")
    installed = _PACKAGE_DIR / "data" / kind
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent / kind
