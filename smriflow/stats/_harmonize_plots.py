"""Figures of :mod:`smriflow.stats.harmonize`: the share of variance explained by site, per region family.

One PNG per family (``harmonize_site_variance_<family>.png``: frontal, parietal, temporal, occipital,
cingulate, insula, other), one row per ROI on a log axis: the R² that site adds to the preserved covariates
before (grey dot) and after (blue dot) harmonization, and the R² of site alone (triangles, same colours).
Drawn with the helpers of :mod:`smriflow.stats.plots` (matplotlib Agg, deterministic PNG).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from smriflow.stats.plots import _label, _pyplot, _save

__all__ = ["harmonize_figures"]


def harmonize_figures(variance: pd.DataFrame, folder: str | Path, *, site: str) -> dict[str, str]:
    """Draw one figure per region family of ``variance`` (:data:`~smriflow.stats.harmonize.VARIANCE_COLUMNS`).

    Returns
    -------
    dict
        ``site_variance_<family>`` → the PNG path, in the order the families first appear.
    """
    plt = _pyplot()
    folder = Path(folder)
    files = {}
    floor = 0.01  # % (the log axis starts there; smaller shares are drawn at the floor)
    for family in dict.fromkeys(variance["family"]):
        part = variance[variance["family"] == family]
        labels = [_label(r, h) for r, h in zip(part["roi"], part["hemi"], strict=True)]
        y = np.arange(len(part))[::-1]

        def pct(column: str, part: pd.DataFrame = part) -> np.ndarray:
            return np.clip(100 * part[column].to_numpy(dtype=float), floor, None)

        fig, ax = plt.subplots(figsize=(6.4, max(2.6, 0.22 * len(part) + 1.6)))
        ax.hlines(y, pct("site_r2_unique_after"), pct("site_r2_unique_before"), color="#bdc3c7", lw=1)
        ax.scatter(pct("site_r2_unique_before"), y, s=22, color="#7f8c8d", label="beyond covariates, before")
        ax.scatter(pct("site_r2_unique_after"), y, s=22, color="#2e86c1", label="beyond covariates, after")
        ax.scatter(pct("site_r2_before"), y, s=18, marker="^", facecolors="none", edgecolors="#7f8c8d",
                   label="site alone, before")  # fmt: skip
        ax.scatter(pct("site_r2_after"), y, s=18, marker="^", facecolors="none", edgecolors="#2e86c1",
                   label="site alone, after")  # fmt: skip
        ax.axvline(1.0, color="#c0392b", ls="--", lw=0.8, label="1 %")
        ax.set_xscale("log")
        ax.set_xlim(floor, 100)
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_ylim(-0.8, len(part) - 0.2)
        ax.set_xlabel(f"variance explained by {site} (%, log scale)")
        ax.set_title(
            f"{family}: median {100 * part['site_r2_unique_before'].median():.1f} % -> "
            f"{100 * part['site_r2_unique_after'].median():.2f} % beyond the covariates "
            f"(n = {int(part['n'].iloc[0])})",
            fontsize=8,
        )
        fig.legend(fontsize=6, loc="lower center", ncol=5, frameon=False)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        files[f"site_variance_{family}"] = _save(fig, folder / f"harmonize_site_variance_{family}.png")
    return files
