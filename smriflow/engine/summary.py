"""The outcome of a run, per subject: :class:`SubjectResult` and :class:`RunSummary`.

Also what the outcome is read from: the name of the top workflow every run builds (:data:`TOP_NAME`),
the subject a node belongs to (:func:`subject_of`, from the node's full name) and the error a text crash
file ends with (:func:`last_error_line`). :mod:`smriflow.engine.run` and
:mod:`smriflow.engine.slurm_array` fill them in; the CLI shows them (:mod:`smriflow.cli.progress`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from smriflow.engine.derivatives import GROUP_NAME
from smriflow.engine.plugins import FailedNode, RunReport

__all__ = [
    "GROUP_LABEL",
    "TOP_NAME",
    "RunSummary",
    "SubjectResult",
    "last_error_line",
    "last_line",
    "subject_of",
]

TOP_NAME = "smriflow_wf"
#: The label a group run reports its one unit under (a subject's is its BIDS label).
GROUP_LABEL = "group"
_SUBJECT_RE = re.compile(rf"(?:^|\.)(?:sub_([A-Za-z0-9]+)_wf|({GROUP_NAME}))(?:\.|$)")


@dataclass
class SubjectResult:
    """How one subject ended: ``done``, ``failed``, ``incomplete`` (nodes not run) or ``interrupted``."""

    label: str
    status: str
    nodes_done: int = 0
    nodes_total: int = 0
    failed: list[FailedNode] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # failed node name -> last line of its error
    reason: str = ""
    inputs: dict[str, list[str]] = field(default_factory=dict)  # [ses-<label> ]input -> the files taken

    @property
    def display(self) -> str:
        """How the summary names the unit: ``sub-<label>``, or ``group`` for a group run."""
        return GROUP_LABEL if self.label == GROUP_LABEL else f"sub-{self.label}"

    def node_path(self, node: FailedNode) -> str:
        """The failed node's hierarchy below the top workflow, e.g. ``sub_01_wf.example_wf.smooth``."""
        return node.name.removeprefix(f"{TOP_NAME}.")


@dataclass
class RunSummary:
    """The outcome of a run, per subject."""

    workflow: str
    output_dir: Path
    work_dir: Path
    log_file: Path | None
    subjects: list[SubjectResult]
    report: RunReport | None = None
    interrupted: int | None = None
    """The signal that ended the run early (SIGINT, SIGTERM), if one did."""
    combined: dict[str, str] = field(default_factory=dict)
    """Inputs with ``many: true`` → how the workflow combines their files (``t1w_runs=average``)."""

    @property
    def ok(self) -> bool:
        return self.interrupted is None and all(subject.status == "done" for subject in self.subjects)

    @property
    def exit_code(self) -> int:
        """0 when every subject is done, 1 otherwise; ``128 + signal`` when interrupted (130, 143)."""
        if self.interrupted is not None:
            return 128 + self.interrupted
        return 0 if self.ok else 1


def subject_of(node_name: str) -> str | None:
    """The subject label in a node's full name (``smriflow_wf.sub_01_wf.…`` → ``01``; ``…group_wf…`` →
    ``group``)."""
    match = _SUBJECT_RE.search(node_name)
    if not match:
        return None
    return match.group(1) or GROUP_LABEL


def last_line(path: str | Path, limit: int = 300) -> str:
    """The last non-blank line of a text file (stripped, at most ``limit`` characters), or ``""``."""
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def last_error_line(crash_file: Path | None) -> str:
    """The last line of the traceback in a text crash file (the error itself), or ``""``."""
    if crash_file is None or crash_file.suffix != ".txt":
        return ""
    return last_line(crash_file)
