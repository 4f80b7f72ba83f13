"""What ``smriflow run`` shows: live progress (nodes done/total, failed) and the summary per subject.

On a terminal the progress is a rich progress bar; otherwise (a log file, CI) it is plain lines such as
``progress: 12/36 nodes done, 1 failed``, at most one a second plus one per failure and a last one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from smriflow.engine.summary import RunSummary, SubjectResult

__all__ = ["Progress", "print_summary"]


class Progress:
    """Count finished and failed nodes from nipype's status callback and show the count.

    Parameters
    ----------
    console : rich.console.Console
        Where to show it; a terminal gets a live bar, anything else plain lines.
    nodes : mapping
        The full names of the nodes expected to run (more may appear: MapNode elements).
    interval : float
        Smallest number of seconds between two plain lines.
    """

    def __init__(self, console: Console, nodes: Mapping[str, Any], *, interval: float = 1.0):
        self.console = console
        self.expected = set(nodes)
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self.interval = interval
        self._last_line = time.monotonic()  # the first plain line comes after one interval
        self._last_text = ""
        self._bar = None
        self._task = None

    @property
    def total(self) -> int:
        return len(self.expected)

    def text(self) -> str:
        return f"{len(self.done)}/{self.total} nodes done, {len(self.failed)} failed"

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]nodes"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[failed]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("nodes", total=self.total, failed="")
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._bar is not None:
            self._refresh()
            self._bar.stop()
        else:
            self._line(force=True)

    def update(self, node: Any, status: str) -> None:
        """nipype's ``status_callback(node, status)``."""
        name = node.fullname
        if name not in self.expected:  # a MapNode element: the total grows
            self.expected.add(name)
        if status == "end":
            self.done.add(name)
        elif status == "exception":
            self.failed.add(name)
        else:
            return
        if self._bar is not None:
            self._refresh()
        else:
            self._line(force=status == "exception")

    def _refresh(self) -> None:
        failed = f"[red]{len(self.failed)} failed" if self.failed else ""
        self._bar.update(self._task, total=self.total, completed=len(self.done), failed=failed)

    def _line(self, *, force: bool = False) -> None:
        now = time.monotonic()
        text = self.text()
        if text == self._last_text or (not force and now - self._last_line < self.interval):
            return
        self._last_line, self._last_text = now, text
        self.console.print(f"progress: {text}")


def print_summary(console: Console, summary: RunSummary, *, debug: bool = False) -> None:
    """Print the table of subjects, then each failure with its error and crash file, then where things are."""
    done = sum(subject.status == "done" for subject in summary.subjects)
    title = f"{summary.workflow}: {done} of {len(summary.subjects)} subject(s) done"
    if [subject.display for subject in summary.subjects] == ["group"]:
        title = f"{summary.workflow}: group run {summary.subjects[0].status}"
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for column in ("Subject", "Status", "Nodes", "Failed node / reason"):
        table.add_column(column, overflow="fold")
    style = {"done": "green", "failed": "red", "incomplete": "yellow", "interrupted": "yellow"}
    for subject in summary.subjects:
        nodes = f"{subject.nodes_done}/{subject.nodes_total}" if subject.nodes_total else "-"
        details = ", ".join(subject.node_path(node) for node in subject.failed) or _shorten(subject.reason)
        status = f"[{style.get(subject.status, '')}]{subject.status}"
        table.add_row(subject.display, status, nodes, escape(details))
    console.print(table)
    print_inputs(console, summary.subjects, summary.combined)
    problems = [subject for subject in summary.subjects if subject.status != "done"]
    for subject in problems:
        if not subject.failed:
            console.print(f"{subject.display}: {subject.reason}", soft_wrap=True, markup=False)
        for node in subject.failed:
            error = subject.errors.get(node.name, "")
            console.print(
                f"{subject.display}: node {subject.node_path(node)} failed" + (f": {error}" if error else ""),
                soft_wrap=True,
                markup=False,
            )
            crash = node.crash_file or "(no crash file was written)"
            console.print(f"  crash file: {crash}", soft_wrap=True, markup=False)
            if debug and node.crash_file and node.crash_file.suffix == ".txt":
                console.print(node.crash_file.read_text(errors="replace"), soft_wrap=True, markup=False)
    if problems:
        console.print()
    console.print(f"Derivatives: {summary.output_dir}", soft_wrap=True, markup=False)
    console.print(f"Log: {summary.log_file}", soft_wrap=True, markup=False)


def print_inputs(console: Console, subjects: Sequence[SubjectResult], combined: Mapping[str, str]) -> None:
    """One line per subject and input: the files taken, and how several are combined."""
    lines = []
    for subject in subjects:
        for name, paths in subject.inputs.items():
            files = ", ".join(Path(path).name for path in paths)
            how = ""
            input_name = name.rsplit(" ", 1)[-1]  # "ses-1 t1w" -> t1w
            if len(paths) > 1 and input_name in combined:
                how = f" ({len(paths)} files combined: {combined[input_name]})"
            lines.append(f"  {subject.display} {name}: {files}{how}")
    if lines:
        console.print("Inputs taken:", soft_wrap=True, markup=False)
        for line in lines:
            console.print(line, soft_wrap=True, markup=False)


def _shorten(text: str, width: int = 48) -> str:
    """A table cell: the full text is printed below the table."""
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"
