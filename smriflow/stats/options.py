"""The options of the group analyses, each declared once (a :class:`~smriflow.utils.params.Param`).

The functions of :mod:`smriflow.stats` take their defaults from here and check their arguments with these
declarations; the interfaces derive their traits from them (:func:`smriflow.interfaces.base.param_trait`),
``smriflow stats roi`` its choices and defaults, and a test checks the workflow files ``roi_glm.yml`` and
``qc_group.yml`` against them (``tests/stats/test_options.py``). Nothing heavy is imported: the command
line builds its parser from this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from smriflow.utils.params import Param

__all__ = ["ALPHA", "CORRECTION", "MISSING", "QCRules", "params_of"]

# -- ROI-wise GLM (smriflow.stats.roi_glm) -----------------------------------------------------------------
MISSING = Param(
    "drop",
    "missing covariates: drop the subject, or impute (mean / most frequent)",
    choices=("drop", "impute"),
)
CORRECTION = Param(
    "fdr_bh", "multiple-comparison correction across ROIs", choices=("bonferroni", "holm", "fdr_bh")
)
ALPHA = Param(
    0.05,
    "level of the correction and of the confidence intervals",
    low=0.0,
    high=1.0,
    low_open=True,
    high_open=True,
)


# -- group QC (smriflow.stats.qc) --------------------------------------------------------------------------
def _rule(param: Param) -> Any:
    return field(default=param.default, metadata={"param": param})


@dataclass(frozen=True)
class QCRules:
    """Thresholds of :func:`smriflow.stats.qc.group_qc` (documented in ``docs/qc.md``).

    Each field is a :class:`~smriflow.utils.params.Param` (:func:`params_of`): its default, bounds and
    one-line doc are those of the ``GroupIQMTable`` interface and of the ``qc_group`` workflow.

    Attributes
    ----------
    z_threshold : float
        Flag a robust ``|z|`` above this on any scored IQM (default 3.5, Iglewicz and Hoaglin).
    scale_floor : float
        Smallest robust standard deviation, as a fraction of ``|median|`` (see
        :func:`smriflow.stats.qc.robust_z`).
    min_subjects : int
        The robust-z rule needs at least this many images; with fewer, only the fixed rules apply.
    brain_volume_min, brain_volume_max : float
        Plausible adult brain (GM + WM) volume, cm³.
    ncc_min : float
        Lowest normalized cross-correlation of the warped T1w with the template.
    dice_min : float
        Lowest Dice of the warped brain mask with the template's.
    lcc_min : float
        Lowest fraction of the brain mask in its largest connected component.
    """

    z_threshold: float = _rule(Param(3.5, "flag a robust |z| above this on any IQM", low=0.0, low_open=True))
    scale_floor: float = _rule(
        Param(0.05, "smallest robust SD, as a fraction of |median| (0: the plain MAD z-score)", low=0.0)
    )
    min_subjects: int = _rule(Param(5, "the robust-z rule needs at least this many images"))
    brain_volume_min: float = _rule(Param(800.0, "plausible brain (GM + WM) volume, lower bound, cm³"))
    brain_volume_max: float = _rule(Param(2000.0, "plausible brain (GM + WM) volume, upper bound, cm³"))
    ncc_min: float = _rule(Param(0.6, "lowest NCC of the normalized T1w with the template"))
    dice_min: float = _rule(Param(0.9, "lowest Dice of the normalized brain mask with the template's"))
    lcc_min: float = _rule(Param(0.99, "lowest fraction of the brain mask in its largest component"))

    def __post_init__(self) -> None:
        for name, param in params_of(QCRules).items():
            param.check(name, getattr(self, name))
        if not self.brain_volume_min < self.brain_volume_max:
            raise ValueError(
                f"'brain_volume_min' ({self.brain_volume_min}) must be below 'brain_volume_max' "
                f"({self.brain_volume_max})."
            )


def params_of(cls: type) -> dict[str, Param]:
    """The declared parameters of a dataclass such as :class:`QCRules`, by field name, in field order."""
    return {item.name: item.metadata["param"] for item in fields(cls) if "param" in item.metadata}
