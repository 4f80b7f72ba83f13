"""Cortical thickness from the T1w: a voxel-wise map and regional tables (``docs/thickness.md``).

- :mod:`~smriflow.anat.thickness.measure`: the thickness of every GM voxel from the memberships
  (:func:`cortical_thickness`; a projection-based method after CAT12's PBT);
- :mod:`~smriflow.anat.thickness.boundaries`: the GM/WM boundary moved to the T1w's intensity edge;
- :mod:`~smriflow.anat.thickness.regions`: what is cortex; an atlas's regional (surface-weighted) means;
- :mod:`~smriflow.anat.thickness.subject`: one subject from files to map, tables and record
  (:func:`subject_thickness`, what ``CorticalThickness`` runs).
"""

from smriflow.anat.thickness.measure import cortical_thickness
from smriflow.anat.thickness.regions import (
    AREA_SIGMA_MM,
    FS_PARCELLATIONS,
    area_weights,
    cortex_context,
    cortex_hemisphere,
    regional_thickness,
    relabel_cortex,
)
from smriflow.anat.thickness.subject import PLAUSIBLE_MM, subject_thickness, thickness_image

__all__ = [
    "AREA_SIGMA_MM",
    "FS_PARCELLATIONS",
    "PLAUSIBLE_MM",
    "area_weights",
    "cortex_context",
    "cortex_hemisphere",
    "cortical_thickness",
    "regional_thickness",
    "relabel_cortex",
    "subject_thickness",
    "thickness_image",
]
