"""smriflow's file cache: derived templates, atlas label images (written by :mod:`smriflow.utils.atomic`)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder: ``$SMRIFLOW_CACHE``, else ``~/.cache/smriflow``."""
    root = os.environ.get("SMRIFLOW_CACHE") or str(Path.home() / ".cache" / "smriflow")
    return Path(root).expanduser()
