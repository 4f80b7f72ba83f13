"""What ``smriflow demo`` prints at the end: measured vs true figures per subject, then the age effects.

:func:`print_results` prints what :func:`smriflow.cli.demo.scoring.score_demo` measured (the same figures as
``demo_results.json``), the steps' status and where the derivatives, reports and statistics are.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["print_results"]


def _print_glm(console: Any, glm: dict[str, Any] | None, coef_format: str, unit: str = "") -> None:
    if glm and glm.get("found"):
        nan = float("nan")
        console.print(
            f"  ROI GLM   coef {glm.get('coef', nan):{coef_format}}{unit}, t = {glm.get('t', nan):.2f}, "
            f"p = {glm.get('p', nan):.2g} (corrected {glm.get('p_corrected', nan):.2g}); "
            f"rank {glm['rank']} of {glm['of']} regions by |t|"
        )


def print_results(results: dict[str, Any], out: Path) -> None:
    """Print the figures of :func:`~smriflow.cli.demo.scoring.score_demo` and where the demo wrote files."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, highlight=False, width=max(100, Console().width))
    table = Table(title="[5/5] measured vs ground truth", box=box.SIMPLE_HEAD, title_justify="left")
    columns = ("subject", "age", "brain Dice", "GM Dice", "WM Dice", "CSF Dice", "GM ml", "true")
    for column in (*columns, "region GM ml", "true"):
        table.add_column(column, justify="right")
    for s in results["subjects"]:
        if "brain_dice" not in s:
            table.add_row(s["participant_id"], f"{s['age']:.1f}", "failed", *[""] * 7)
            continue
        table.add_row(
            s["participant_id"],
            f"{s['age']:.1f}",
            *(f"{s[key]:.3f}" for key in ("brain_dice", "gm_dice", "wm_dice", "csf_dice")),
            f"{s['gm_mm3'] / 1000:.0f}",
            f"{s['true_gm_mm3'] / 1000:.0f}",
            f"{s['region_gm_mm3'] / 1000:.2f}",
            f"{s['true_region_gm_mm3'] / 1000:.2f}",
        )

    console.print(table)
    console = Console(file=sys.stdout, highlight=False, soft_wrap=True)  # long paths stay on one line
    effect = results["age_effect"]
    true = effect["true"]
    console.print(
        f"Age effect on the GM volume of {effect['region']} ({effect['atlas']} atlas):\n"
        f"  true      {true['slope']:8.1f} mm³/year ({true['percent_per_year']:+.2f} %/year of the mean)"
    )
    if "measured" in effect:
        m = effect["measured"]
        console.print(
            f"  measured  {m['slope']:8.1f} mm³/year ({m['percent_per_year']:+.2f} %/year), "
            f"r = {m['r']:.3f} over {m['n']} subjects"
        )
    _print_glm(console, effect.get("glm"), ".1f")
    thick = results.get("thickness_effect") or {}
    if thick:
        console.print(
            f"Age effect on the cortical thickness of {effect['region']} "
            f"(% per year of the thickness at {thick['reference_age']:g} years):\n"
            f"  true      {thick['true_percent_per_year']:+.2f} %/year"
        )
        if "measured" in thick:
            m = thick["measured"]
            console.print(
                f"  measured  {m['percent_per_year']:+.2f} %/year ({m['slope']:+.4f} mm/year), "
                f"r = {m['r']:.3f} over {m['n']} subjects"
            )
        _print_glm(console, thick.get("glm"), "+.4f", " mm/year")
    qc = results.get("qc") or {}
    if "flagged" in qc:
        flagged = "; ".join(f"{k}: {v}" for k, v in qc["flagged"].items()) or "none"
        console.print(
            f"Group QC: {len(qc['flagged'])} of {qc['n']} subjects flagged ({flagged}); {qc['table']}"
        )
    status = ", ".join(f"{name} {step['status']}" for name, step in results["steps"].items())
    console.print(f"Steps: {status}")
    deriv = out / "derivatives" / "smriflow"
    console.print(f"Derivatives: {deriv}")
    for report in results["reports"]:
        console.print(f"Report: {report}")
    if results["steps"]["roi_glm"]["status"] == "done":
        console.print(f"ROI GLM: {out / 'stats' / 'roi_glm' / 'roi_glm.tsv'}")
    console.print(f"All figures: {out / 'demo_results.json'}; total {results['seconds']:.0f} s")
