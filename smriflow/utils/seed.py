"""The default random seed of smriflow: every node that draws numbers starts from it unless told otherwise."""

from __future__ import annotations

__all__ = ["DEFAULT_SEED"]

#: Seed of every interface and function that draws random numbers when none is given (``--seed``), so
#: that two runs of the same inputs give byte-identical derivatives.
DEFAULT_SEED = 20161
