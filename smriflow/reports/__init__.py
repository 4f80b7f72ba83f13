"""HTML quality-control reports (imports only ``smriflow.utils`` and third-party packages).

* :mod:`smriflow.reports.reportlets`: SVG mosaics of a subject's images (nilearn on matplotlib).
* :mod:`smriflow.reports.blocks`: the IQM table, QC verdict, input warnings, methods and references.
* :mod:`smriflow.reports.subject`: the per-subject report ``sub-<label>.html``.
* :mod:`smriflow.reports.group`: the group QC page ``group_desc-qc_T1w.html``.

Each report is one self-contained HTML file (images inlined, no network), byte-identical for the same inputs.
"""

from smriflow.reports.group import group_report, read_group_table, write_group_reports
from smriflow.reports.subject import (
    report_filename,
    subject_report,
    update_subject_report,
    write_subject_report,
)

__all__ = [
    "group_report",
    "read_group_table",
    "report_filename",
    "subject_report",
    "update_subject_report",
    "write_group_reports",
    "write_subject_report",
]
