"""Offline access to standard-space templates.

The default template, ``MNI152NLin2009aSym``, is the MNI ICBM152 2009a symmetric template that nilearn ships
inside its wheel (``nilearn/datasets/data/mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz``; 1 mm,
197 x 233 x 189, RAS, already skull-stripped). Those files are turned into TemplateFlow-style images once and
cached under ``$SMRIFLOW_CACHE/templates`` (default ``~/.cache/smriflow/templates``):

* ``desc-brain_T1w``: the T1w scaled to [0, 1] (float32), as :func:`nilearn.datasets.load_mni152_template`.
* ``desc-brain_mask``: T1w > 0.2 after scaling (the rule of :func:`nilearn.datasets.load_mni152_brain_mask`),
  holes filled, uint8.
* ``label-GM_probseg`` / ``label-WM_probseg``: nilearn's GM/WM maps scaled to [0, 1] (float32).
* ``label-CSF_probseg``: *derived*, not shipped: ``clip(mask - GM - WM, 0, 1)``, i.e. whatever part of a brain
  voxel the GM and WM maps leave unexplained (sulcal CSF, ventricles, and some partial volume).

The 2 mm versions are resampled from the 1 mm images on a fixed grid (same corner as the 1 mm grid, 2 mm
voxels) with trilinear interpolation, and the 2 mm mask is recomputed from the 2 mm T1w by the same rule.
Files are written atomically (temporary file + :func:`os.replace`), so concurrent processes never read a
half-written template, and the content depends only on the nilearn files.

Any other template name is looked up in the local TemplateFlow cache (``$TEMPLATEFLOW_HOME``, default
``~/.cache/templateflow``) by reading the folder directly: TemplateFlow's own ``get`` downloads missing or
empty (stub) files, which smriflow must never do at run time.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import nibabel as nb
import numpy as np

from smriflow.utils.atomic import atomic_write
from smriflow.utils.cache import cache_root

__all__ = [
    "DEFAULT_TEMPLATE",
    "TemplateNotFoundError",
    "available_templates",
    "check_template",
    "get_template",
    "template_cache_dir",
    "template_space_name",
    "templateflow_home",
]

DEFAULT_TEMPLATE = "MNI152NLin2009aSym"
_CACHE_VERSION = "v1"  # bump when the derivation rules above change
_NILEARN_FILES = {
    "T1w": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "GM": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "WM": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
_MASK_THRESHOLD = 0.2
_SUFFIXES = ("T1w", "mask", "probseg")
_LABELS = ("GM", "WM", "CSF")
_ENTITY = re.compile(r"^([a-zA-Z0-9]+)-([a-zA-Z0-9.+]+)$")
_STUB_BYTES = 1024  # a TemplateFlow file smaller than this is an empty stub (not downloaded)


class TemplateNotFoundError(FileNotFoundError):
    """A template file is neither shipped with smriflow's dependencies nor in the local TemplateFlow cache."""


def template_space_name(name: str = DEFAULT_TEMPLATE) -> str:
    """Return the BIDS ``space-`` label of a template name.

    Parameters
    ----------
    name : str
        Template identifier, with or without a ``tpl-`` prefix or a ``:cohort-N`` qualifier.

    Returns
    -------
    str
        The identifier as used in ``space-<label>`` entities (e.g. ``MNI152NLin2009aSym``).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"'name' must be a non-empty template identifier. {name!r} was provided.")
    label = name.strip().removeprefix("tpl-").split(":", 1)[0]
    if not re.fullmatch(r"[a-zA-Z0-9]+", label):
        raise ValueError(f"'name' must be alphanumeric (a BIDS label). {name!r} was provided.")
    return label


def available_templates() -> list[str]:
    """Return the templates usable offline: the default one, then those of the local TemplateFlow cache.

    A TemplateFlow template counts when its folder holds at least one downloaded T1w image (not an empty
    stub); :func:`get_template` may still lack a resolution or a mask of it, and says so.

    Returns
    -------
    list of str
        :data:`DEFAULT_TEMPLATE` first, then the others sorted.
    """
    home = templateflow_home()
    found = set()
    for folder in home.glob("tpl-*") if home.is_dir() else ():
        images = folder.glob(f"{folder.name}_*T1w.nii.gz")
        if any(image.stat().st_size >= _STUB_BYTES for image in images):
            found.add(folder.name.removeprefix("tpl-"))
    return [DEFAULT_TEMPLATE, *sorted(found - {DEFAULT_TEMPLATE})]


def resolution_note(space: str, resolution: str | int) -> str:
    """The ``Resolution`` sidecar note of a ``res-`` in template space, as niworkflows words it, read offline.

    From ``template_description.json`` of the local TemplateFlow cache; ``"Unknown"`` when it is absent or
    does not list the resolution (nothing is downloaded).
    """
    import json

    path = templateflow_home() / f"tpl-{space}" / "template_description.json"
    try:
        described = json.loads(path.read_text()).get("res", {})
    except (OSError, ValueError):
        return "Unknown"
    found = described.get(str(resolution)) or described.get(f"{resolution:0>2}")
    if not isinstance(found, dict) or "zooms" not in found:
        return "Unknown"
    return f"Template {space} ({'x'.join(map(str, found['zooms']))} mm^3), from the local TemplateFlow cache"


def template_cache_dir() -> Path:
    """Return the folder where derived template files are cached (``$SMRIFLOW_CACHE/templates``)."""
    return cache_root() / "templates" / _CACHE_VERSION


def templateflow_home() -> Path:
    """Return TemplateFlow's cache folder (``$TEMPLATEFLOW_HOME``, else ``~/.cache/templateflow``)."""
    home = os.environ.get("TEMPLATEFLOW_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "templateflow"


def get_template(
    name: str = DEFAULT_TEMPLATE,
    *,
    resolution: int = 1,
    suffix: str = "T1w",
    desc: str | None = "brain",
    label: str | None = None,
) -> Path:
    """Return the path of one template image, without any download.

    Parameters
    ----------
    name : str
        Template identifier. ``MNI152NLin2009aSym`` (default) is served from the files nilearn ships; any
        other name is read from the local TemplateFlow cache.
    resolution : int
        Voxel size in mm: 1 or 2 for the default template; a TemplateFlow ``res-`` index otherwise.
    suffix : str
        ``"T1w"``, ``"mask"`` or ``"probseg"``.
    desc : str or None
        ``desc-`` entity: ``"brain"`` for the skull-stripped T1w and the brain mask; ignored for
        ``probseg``. None selects files without a ``desc-`` entity (TemplateFlow only).
    label : str or None
        ``"GM"``, ``"WM"`` or ``"CSF"``; required for ``probseg``, must be None otherwise.

    Returns
    -------
    pathlib.Path
        An existing NIfTI file.

    Raises
    ------
    ValueError
        When an argument is invalid.
    TemplateNotFoundError
        When the file is not available offline; the message says how to install it.
    """
    space = template_space_name(name)
    if suffix not in _SUFFIXES:
        raise ValueError(f"'suffix' must be one of {set(_SUFFIXES)}. {suffix!r} was provided.")
    if suffix == "probseg":
        if label not in _LABELS:
            raise ValueError(f"'label' must be one of {set(_LABELS)} for probseg. {label!r} was provided.")
        desc = None
    elif label is not None:
        raise ValueError(f"'label' applies only to suffix 'probseg'. {label!r} was provided.")
    if isinstance(resolution, bool) or not isinstance(resolution, int | np.integer) or resolution < 1:
        raise ValueError(f"'resolution' must be a positive integer. {resolution!r} was provided.")
    if space == DEFAULT_TEMPLATE:
        return _nilearn_template(int(resolution), suffix, desc, label)
    return _templateflow_cached(space, int(resolution), suffix, desc, label)


# --- default template from nilearn -----------------------------------------------------------------------


def _nilearn_data_dir() -> Path:
    import nilearn.datasets  # only for its data folder; nothing is fetched

    return Path(nilearn.datasets.__file__).parent / "data"


def _nilearn_template(resolution: int, suffix: str, desc: str | None, label: str | None) -> Path:
    if resolution not in (1, 2):
        raise ValueError(f"'resolution' must be 1 or 2 for {DEFAULT_TEMPLATE}. {resolution!r} was provided.")
    if suffix in ("T1w", "mask") and desc != "brain":
        raise TemplateNotFoundError(
            f"{DEFAULT_TEMPLATE} ships only skull-stripped images: use desc='brain' for suffix "
            f"{suffix!r} ({desc!r} was provided)."
        )
    entities = f"res-{resolution}_" + (f"label-{label}_" if label else f"desc-{desc}_") + suffix
    name = Path(f"tpl-{DEFAULT_TEMPLATE}") / f"tpl-{DEFAULT_TEMPLATE}_{entities}.nii.gz"
    out = template_cache_dir() / name
    if out.is_file():
        return out
    img = _derive_nilearn_image(resolution, suffix, label)
    try:
        _atomic_save(img, out)
    except OSError as exc:  # e.g. a read-only home in a container: fall back to the temporary folder
        fallback = (
            Path(tempfile.gettempdir()) / f"smriflow-{os.getuid()}" / "templates" / _CACHE_VERSION / name
        )
        warnings.warn(
            f"Cannot write the template cache {out.parent} ({exc.strerror}); using {fallback.parent}. "
            "Set SMRIFLOW_CACHE to a writable folder.",
            RuntimeWarning,
        )
        if not fallback.is_file():
            _atomic_save(img, fallback)
        out = fallback
    return out


def _load_scaled(key: str) -> nb.Nifti1Image:
    """Load one nilearn template file as float32 scaled to [0, 1]."""
    path = _nilearn_data_dir() / _NILEARN_FILES[key]
    if not path.is_file():
        raise TemplateNotFoundError(
            f"{path} is missing: the installed nilearn does not ship the MNI152 2009a template "
            "(reinstall nilearn>=0.11)."
        )
    img = nb.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    data /= np.float32(data.max())
    return nb.Nifti1Image(data, img.affine)


def _downsample(img: nb.Nifti1Image, factor: int) -> nb.Nifti1Image:
    """Trilinear resampling onto a grid with the same corner voxel and ``factor`` times larger voxels."""
    from scipy import ndimage

    shape = tuple(int(np.ceil(n / factor)) for n in img.shape)
    matrix = np.eye(3) * factor  # output voxel index -> input voxel index (same origin, axis-aligned)
    data = ndimage.affine_transform(
        np.asarray(img.dataobj, dtype=np.float32),
        matrix,
        offset=0.0,
        output_shape=shape,
        order=1,
        mode="constant",
        cval=0.0,
    )
    affine = img.affine.copy()
    affine[:3, :3] = img.affine[:3, :3] @ matrix
    return nb.Nifti1Image(np.clip(data, 0, 1).astype(np.float32), affine)


def _derive_nilearn_image(resolution: int, suffix: str, label: str | None) -> nb.Nifti1Image:
    from scipy import ndimage

    def scaled(key: str) -> nb.Nifti1Image:
        img = _load_scaled(key)
        return img if resolution == 1 else _downsample(img, resolution)

    t1w = scaled("T1w")
    if suffix == "T1w":
        return t1w
    mask = ndimage.binary_fill_holes(np.asarray(t1w.dataobj) > _MASK_THRESHOLD)
    if suffix == "mask":
        out = nb.Nifti1Image(mask.astype(np.uint8), t1w.affine)
        out.set_data_dtype(np.uint8)
        return out
    if label in ("GM", "WM"):
        return scaled(label)
    gm = np.asarray(scaled("GM").dataobj)
    wm = np.asarray(scaled("WM").dataobj)
    csf = np.clip(mask.astype(np.float32) - gm - wm, 0.0, 1.0).astype(np.float32)
    return nb.Nifti1Image(csf, t1w.affine)


def _atomic_save(img: nb.Nifti1Image, out: Path) -> None:
    """Write ``img`` to ``out`` atomically (see :func:`smriflow.utils.atomic.atomic_write`)."""
    img.set_qform(img.affine, code=4)  # 4 = MNI152
    img.set_sform(img.affine, code=4)
    atomic_write(out, lambda tmp: nb.save(img, tmp))


# --- any other template: local TemplateFlow cache only ------------------------------------------------


def _entities(filename: str) -> tuple[dict[str, str], str] | None:
    """Split a BIDS-like file name into ``({entity: value}, suffix)``; None for non-NIfTI files."""
    if not filename.endswith(".nii.gz"):
        return None
    parts = filename[: -len(".nii.gz")].split("_")
    found = {}
    for part in parts[:-1]:
        match = _ENTITY.match(part)
        if match is None:
            return None
        found[match.group(1)] = match.group(2)
    return found, parts[-1]


def _templateflow_cached(
    space: str, resolution: int, suffix: str, desc: str | None, label: str | None
) -> Path:
    folder = templateflow_home() / f"tpl-{space}"
    wanted = {"desc": desc, "label": label}
    matches = []
    for path in sorted(folder.glob(f"tpl-{space}_*.nii.gz")) if folder.is_dir() else []:
        parsed = _entities(path.name)
        if parsed is None or parsed[1] != suffix:
            continue
        ents, _ = parsed
        if set(ents) - {"tpl", "res", "desc", "label"}:
            continue  # cohort-, atlas-, hemi- ... files are not what was asked for
        res = ents.get("res")
        if res is None or not res.isdigit() or int(res) != resolution:
            continue
        if any(ents.get(key) != value for key, value in wanted.items()):
            continue
        if path.stat().st_size < _STUB_BYTES:
            continue  # an empty TemplateFlow stub (or a saved S3 error page): not downloaded
        matches.append(path)
    if not matches:
        query = f"resolution={resolution}, suffix={suffix!r}, desc={desc!r}" + (
            f", label={label!r}" if label else ""
        )
        raise TemplateNotFoundError(
            f"Template {space!r} ({query}) is not in the local TemplateFlow cache {folder}: on a machine "
            f"with internet run `python -c \"import templateflow.api as t; t.get('{space}')\"` and copy the "
            "cache here, or set TEMPLATEFLOW_HOME to a folder that holds it."
        )
    return matches[0]


#: The template files a run of ``anat_preproc`` reads: (resolution, suffix, desc, label).
REQUIRED_FILES = (
    *((res, suffix, "brain", None) for res in (1, 2) for suffix in ("T1w", "mask")),
    *((res, "probseg", None, label) for res in (1, 2) for label in _LABELS),
)

#: The files a registration to a template reads (a further ``--output-spaces`` space): the brain and mask.
REGISTRATION_FILES = REQUIRED_FILES[:4]


def fetch_command(name: str, resolution: int, suffix: str, desc: str | None, label: str | None) -> str:
    """The TemplateFlow call that downloads one template file (to run on a machine with internet)."""
    extra = f", desc='{desc}'" if desc else ""
    extra += f", label='{label}'" if label else ""
    return (
        f"python -c \"from templateflow.api import get; get('{name}', resolution={resolution}{extra}, "
        f"suffix='{suffix}')\""
    )


def check_template(
    name: str, files: Sequence[tuple[int, str, str | None, str | None]] = REQUIRED_FILES
) -> None:
    """Check offline that every file smriflow reads of template ``name`` is available.

    ``files`` are (resolution, suffix, desc, label): by default :data:`REQUIRED_FILES`, those of the run's
    template; :data:`REGISTRATION_FILES` for a template that is only registered to.

    The default template is always available; any other must be in the local TemplateFlow cache
    (``$TEMPLATEFLOW_HOME``), where an empty stub file counts as missing.

    Raises
    ------
    TemplateNotFoundError
        One line naming the first missing file and the TemplateFlow command that fetches it.
    """
    space = template_space_name(name)
    if space == DEFAULT_TEMPLATE:
        return
    for resolution, suffix, desc, label in files:
        try:
            _templateflow_cached(space, resolution, suffix, desc, label)
        except TemplateNotFoundError:
            missing = (
                f"res-{resolution:02d}"
                + (f"_desc-{desc}" if desc else "")
                + (f"_label-{label}" if label else "")
            )
            raise TemplateNotFoundError(
                f"template {space}: tpl-{space}_{missing}_{suffix}.nii.gz is not in the local TemplateFlow "
                f"cache {templateflow_home()} (empty stubs count as missing); pre-fetch it with "
                f"`{fetch_command(space, resolution, suffix, desc, label)}` (and the other files smriflow "
                "reads: docs/fmriprep.md), or set TEMPLATEFLOW_HOME to a cache that holds them"
            ) from None
