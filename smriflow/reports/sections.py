"""Sections of the subject report for optional inputs: lesions, other contrasts, T1w runs, surfaces.

:func:`smriflow.reports.subject.subject_report` adds each section only when its input is given, so a
report without them is what it was before they existed. Each function returns one ``<section>``.

- :func:`lesion_section`: the lesion's outline over the tissue outlines, its volume, components and the
  share of it each tissue label got (:func:`lesion_stats`);
- :func:`contrasts_section`: each other contrast on the T1w grid with the T1w's outlines over it, and the
  rigid motion its registration found (:func:`read_record`);
- :func:`runs_section`: the table of the T1w runs combined into one image;
- :func:`surfaces_section`: cortical thickness on the pial mesh and its means, from a ``$SUBJECTS_DIR`` or
  an fMRIPrep derivatives folder;
- :func:`thickness_section`: smriflow's own thickness map on the T1w, its means per hemisphere, the share of
  implausible values and the Desikan-Killiany regional means (the ``CorticalThickness`` record).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np

from smriflow.anat.lesions import lesion_tissue_fractions
from smriflow.reports import reportlets as rl
from smriflow.reports.html import escape, figure, section, table
from smriflow.utils.morphology import connected_components

__all__ = [
    "contrasts_section",
    "lesion_section",
    "lesion_stats",
    "read_record",
    "runs_section",
    "surfaces_section",
    "thickness_section",
]

#: what the runs record's ``method`` means
_RUN_METHODS = {
    "average": "each run was registered rigidly to the first, scaled to its median intensity and the runs "
    "were averaged on the first run's grid",
    "first": "the first run was used; the others were left out",
}


def read_record(path: str | Path, what: str) -> Any:
    """Read a JSON record (a contrast's registration, the runs combined).

    Raises
    ------
    ValueError
        Naming the file and ``what`` it should hold, when it cannot be read as JSON.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the {what} ({exc})") from None


def _number(value: Any, digits: int = 2) -> str:
    """A number, or a list of numbers, with ``digits`` decimals; "n/a" when missing or not a finite number."""
    if isinstance(value, list | tuple) and value:
        return "(" + ", ".join(_number(v, digits) for v in value) + ")"
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return "n/a"


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def lesion_stats(lesion: np.ndarray, dseg: np.ndarray, zooms: Sequence[float]) -> dict[str, Any]:
    """Size of a lesion mask and the tissue labels its voxels got.

    Parameters
    ----------
    lesion : numpy.ndarray
        The mask (non-zero = lesion).
    dseg : numpy.ndarray
        Tissue labels on the same grid (1 GM, 2 WM, 3 CSF, 0 background).
    zooms : sequence of float
        Voxel size (mm).

    Returns
    -------
    dict
        ``voxels``, ``volume_ml``, ``n_components`` (26-connected), ``largest_ml`` and ``fractions``
        (:func:`smriflow.anat.lesions.lesion_tissue_fractions`; empty for an empty mask).
    """
    mask = np.asarray(lesion) > 0
    voxel_ml = float(np.prod(np.asarray(zooms[:3], dtype=np.float64))) / 1000.0
    _, sizes = connected_components(mask, full=True)
    voxels = int(mask.sum())
    return {
        "voxels": voxels,
        "volume_ml": voxels * voxel_ml,
        "n_components": int(sizes.size),
        "largest_ml": float(sizes.max()) * voxel_ml if sizes.size else 0.0,
        "fractions": lesion_tissue_fractions(dseg, mask) if voxels else {},
    }


def lesion_section(
    corrected: nb.Nifti1Image,
    lesion_mask: str | Path,
    t1w_dseg: str | Path,
    box: tuple[slice, slice, slice],
    n_cuts: int,
) -> str:
    """The "Lesions" section: outline mosaic through the lesions, volume, components, tissue labels.

    ``corrected`` is the bias-corrected T1w cut to ``box`` (the report's crop of the brain mask); the mask
    and the labels are on the T1w grid (checked by the caller). The numbers count the whole mask, also
    what lies outside the crop.
    """
    how = (
        "The lesion mask's outline (yellow) on the bias-corrected T1w, with the final tissue outlines: green "
        "the outer edge of grey + white matter, magenta the grey/white edge. The slices cross the lesions. "
        "Lesions are filled with white-matter intensity before segmentation, so they should be labelled "
        "WM: the yellow outlines should lie inside the magenta ones."
    )
    img, labels = nb.load(str(lesion_mask)), nb.load(str(t1w_dseg))
    stats = lesion_stats(np.asanyarray(img.dataobj), np.asanyarray(labels.dataobj), img.header.get_zooms())
    if not stats["voxels"]:
        return section("lesions", "Lesions", how, '<p class="warn">The lesion mask is empty.</p>')
    rows = [
        ["lesion volume (ml)", f"{stats['volume_ml']:.3f}"],
        ["voxels", str(stats["voxels"])],
        ["connected components (26-neighbourhood)", str(stats["n_components"])],
        ["largest component (ml)", f"{stats['largest_ml']:.3f}"],
    ]
    names = {"GM": "labelled GM", "WM": "labelled WM", "CSF": "labelled CSF", "background": "outside tissue"}
    rows += [[names[key], _percent(value)] for key, value in stats["fractions"].items()]
    content = table(["lesions", ""], rows, numeric=[False, True])
    wm = stats["fractions"]["WM"]
    if wm < 0.5:
        content += (
            f'<p class="warn">Only {_percent(wm)} of the lesion voxels are labelled WM: check that the '
            "lesion was filled before segmentation and that the mask is on the right image.</p>"
        )
    box_lesion = rl.crop(img, box, np.uint8)
    if np.asanyarray(box_lesion.dataobj).any():
        legend = (
            '<p class="legend">'
            f'<span style="background:{rl.LESION_COLOR}"></span>lesion'
            + "".join(
                f'<span style="background:{color}"></span>{name}'
                for name, _, color in rl.TISSUE_COLORS
                if name != "CSF"
            )
            + "</p>"
        )
        svg = rl.lesion_svg(
            corrected, box_lesion, rl.crop(labels, box, np.uint8), rl.lesion_cuts(box_lesion, n_cuts)
        )
        content += legend + figure(svg, "lesion contours")
    else:
        content += '<p class="warn">The lesions lie outside the brain mask: no slice is drawn.</p>'
    return section("lesions", "Lesions", how, content)


def _record_table(record: Mapping[str, Any] | None) -> str:
    if record is None:
        return '<p class="how">No registration record was given.</p>'
    if not isinstance(record, Mapping):
        return '<p class="warn">The registration record is not a JSON object.</p>'
    rows = [
        ["translation (mm)", _number(record.get("translation_mm"))],
        ["rotation (degrees)", _number(record.get("rotation_deg"))],
        ["metric", escape(record.get("metric", "n/a"))],
    ]
    if "masked_metric" in record:
        rows.append(["metric in the T1w brain mask", "yes" if record["masked_metric"] else "no"])
    return (
        '<p class="how">Rigid motion between the contrast and the T1w found by the registration '
        "(ContrastToT1w records the translation's length and the rotation's angle):</p>"
        + table(["registration", ""], rows, numeric=[False, True])
    )


def contrasts_section(
    contrasts: Mapping[str, nb.Nifti1Image | None],
    records: Mapping[str, Mapping[str, Any]],
    mask: nb.Nifti1Image,
    dseg: nb.Nifti1Image,
    cuts: Mapping[str, list[float]],
) -> str:
    """The "Other contrasts" section: each contrast with the T1w's outlines, and its registration record.

    ``contrasts`` maps a name (T2w, FLAIR) to the contrast on the T1w grid cut to the report's box (None when
    only its record is given); ``mask`` and ``dseg`` are the T1w's brain mask and labels, cut the same way.
    """
    how = (
        "Each contrast resampled on the T1w grid, with the T1w's brain-mask outline (red) and grey/white "
        "edge (magenta) over it. When the rigid registration worked, the red line follows the contrast's "
        "brain edge and the magenta line its grey/white boundary everywhere; a shift or tilt shows as a "
        "line running beside the edge it should follow."
    )
    parts = []
    for name in sorted(set(contrasts) | set(records)):
        image = contrasts.get(name)
        part = f"<h3>{escape(name)}</h3>"
        if image is not None:
            part += figure(rl.contrast_svg(image, mask, dseg, cuts), f"{name} on the T1w grid")
        else:
            part += f'<p class="warn">No {escape(name)} image on the T1w grid was given.</p>'
        parts.append(part + _record_table(records.get(name)))
    return section("contrasts", "Other contrasts", how, "".join(parts))


def _runs(record: Any, source: str) -> tuple[str, str, list[Mapping[str, Any]]]:
    if isinstance(record, list):  # a bare list of runs, as average_runs returns it
        record = {"method": "average", "runs": record}
    if not isinstance(record, Mapping) or not isinstance(record.get("runs", []), list):
        raise ValueError(f"{source}: expected a JSON object with 'method' and 'runs' (a list of runs)")
    runs = record.get("runs", [])
    for index, run in enumerate(runs):
        if not isinstance(run, Mapping):
            raise ValueError(f"{source}: run {index} of 'runs' is not a JSON object")
    return str(record.get("method", "")), str(record.get("used", "")), runs


def runs_section(record: Any, source: str = "runs_record") -> str:
    """The "T1w runs combined" section: the method and, per run, file, translation, rotation and scale.

    ``record`` is ``{"method": "average" | "first", "runs": [{"file", "translation_mm", "rotation_deg",
    "scale"}, ...], "used": file or "average"}`` as ``CombineRuns`` writes it (missing keys show as n/a),
    or a bare list of runs (then the method is ``average``). Translation and rotation may be numbers (the
    length and angle of the motion) or lists of numbers.

    Returns
    -------
    str
        The section, or ``""`` when the record lists fewer than two runs (nothing was combined).

    Raises
    ------
    ValueError
        Naming ``source`` when the record has another shape.
    """
    method, used, runs = _runs(record, source)
    if len(runs) < 2:
        return ""
    meaning = _RUN_METHODS.get(method, "")
    processed = f" The image processed is <code>{escape(used)}</code>." if used and used != "average" else ""
    line = (
        f"<p>Method: <b>{escape(method or 'n/a')}</b>"
        + (f" ({escape(meaning)})" if meaning else "")
        + f".{processed}</p>"
    )
    rows = [
        [
            str(index),
            escape(run.get("file", "n/a")),
            _number(run.get("translation_mm")),
            _number(run.get("rotation_deg")),
            _number(run.get("scale"), 3),
        ]
        for index, run in enumerate(runs, start=1)
    ]
    header = ["run", "file", "translation (mm)", "rotation (degrees)", "intensity scale"]
    content = line + table(header, rows, numeric=[True, False, True, True, True])
    how = (
        "The T1w runs of this session that were combined into the image processed here, with the rigid "
        "motion and intensity scale found for each against the first. A large motion or a scale far from "
        "1 is worth a look at the input."
    )
    return section("runs", "T1w runs combined", how, content)


def surfaces_section(surfaces_dir: str | Path, subject: str, session: str = "") -> str:
    """The "Surfaces" section: thickness on the pial mesh, mean thickness per hemisphere and per region.

    The subject's folder is the first of
    :func:`smriflow.reports.surfaces.surface_folder_candidates` that holds a pial mesh with a thickness
    map; without one, or when its files cannot be read, the section says so in one line.
    """
    from smriflow.reports.surfaces import (
        load_thickness,
        subject_surface_folder,
        surface_folder_candidates,
        thickness_summary,
        thickness_svg,
    )

    how = (
        "Cortical thickness on the pial surface, lateral and medial views of each hemisphere (grey: no "
        "thickness, the medial wall). Thickness should vary smoothly, thickest in the insula and temporal "
        "pole and thinnest around the central sulcus and occipital pole; patches of 0 or 5 mm on the "
        "lateral surface point to failed surface placement."
    )
    label = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    if not Path(surfaces_dir).is_dir():
        line = f'<p class="warn">No surfaces for {escape(label)}: {escape(surfaces_dir)} is not a folder.</p>'
        return section("surfaces", "Surfaces", how, line)
    folder = subject_surface_folder(surfaces_dir, subject, session)
    if folder is None:
        candidates = surface_folder_candidates(surfaces_dir, subject, session)
        tried = ", ".join(str(path.relative_to(surfaces_dir)) for path in candidates)
        line = (
            f'<p class="warn">No surfaces for {escape(label)} in {escape(surfaces_dir)} (looked for a pial '
            f"mesh with a thickness map in {escape(tried)}).</p>"
        )
        return section("surfaces", "Surfaces", how, line)
    try:
        hemispheres = load_thickness(folder)
        per_hemisphere, parcellation, regions = thickness_summary(folder, hemispheres)
        svg = thickness_svg(hemispheres)
    except (FileNotFoundError, ValueError) as exc:
        line = f'<p class="warn">The surfaces of {escape(label)} cannot be shown: {escape(exc)}</p>'
        return section("surfaces", "Surfaces", how, line)
    content = f'<p class="caption">From <code>{escape(folder)}</code>.</p>' + figure(
        svg, "cortical thickness"
    )
    rows = [
        [hemi, str(info["vertices"]), str(info["cortex_vertices"]), _number(info["mean"], 3)]
        for hemi, info in per_hemisphere.items()
    ]
    content += table(
        ["hemisphere", "vertices", "vertices with thickness > 0", "mean thickness (mm)"],
        rows,
        numeric=[False, True, True, True],
    )
    if parcellation:
        shown = list(regions)
        names = list(dict.fromkeys(name for hemi in shown for name in regions[hemi]))
        region_rows = [
            [escape(name)] + [_number(regions[hemi].get(name), 3) for hemi in shown] for name in names
        ]
        content += (
            f"<details><summary>Mean thickness per region of {escape(parcellation)} ({len(names)} regions)"
            "</summary>"
            + table(["region"] + [f"{hemi} (mm)" for hemi in shown], region_rows, numeric=[False, True, True])
            + "</details>"
        )
    return section("surfaces", "Surfaces", how, content)


def thickness_section(
    corrected: nb.Nifti1Image,
    thickness: nb.Nifti1Image | None,
    record: Mapping[str, Any] | None,
    cuts: Mapping[str, list[float]],
) -> str:
    """The "Cortical thickness" section: the map over the T1w, its summary and the regional means.

    ``corrected`` and ``thickness`` are cut to the report's box; ``record`` is ``CorticalThickness``'s JSON
    record (:func:`smriflow.anat.thickness.subject_thickness`). Either may be missing.
    """
    how = (
        "Voxel-wise cortical thickness (mm; docs/thickness.md) over the bias-corrected T1w: colour should "
        "follow the cortical ribbon only, without gaps over whole gyri, without spilling into white matter "
        "or the dura. Adult cortex is mostly 1.5–4 mm thick; the regional means are those of the "
        "Desikan-Killiany tables (sub-&lt;label&gt;_hemi-L_atlas-desikankilliany_thickness.tsv)."
    )
    content = ""
    if thickness is not None:

        def draw(display) -> None:
            if np.asanyarray(thickness.dataobj).any():
                display.add_overlay(thickness, cmap="viridis", vmin=0.0, vmax=5.0, threshold=1e-3)

        content += figure(rl.mosaic_svg(corrected, cuts, draw=draw, modes="yz"), "thickness map")
        content += '<p class="legend">colour scale: viridis, 0 mm (dark) to 5 mm (yellow)</p>'
    if not isinstance(record, Mapping):
        return section(
            "thickness", "Cortical thickness", how, content + '<p class="how">No record was given.</p>'
        )
    means, iqms = record.get("mean_mm", {}), record.get("iqms", {})
    low, high = record.get("plausible_mm", [1.0, 4.5])
    rows = [
        ["mean, left hemisphere (mm)", _number(means.get("lh"))],
        ["mean, right hemisphere (mm)", _number(means.get("rh"))],
        ["cortical voxels", str(record.get("voxels", "n/a"))],
        [f"share below {low:g} mm", _number(100 * iqms.get("thickness_frac_below", math.nan), 1) + " %"],
        [f"share above {high:g} mm", _number(100 * iqms.get("thickness_frac_above", math.nan), 1) + " %"],
    ]
    content += table(["thickness", ""], rows, numeric=[False, True])
    if max(iqms.get("thickness_frac_below", 0.0), iqms.get("thickness_frac_above", 0.0)) > 0.1:
        content += (
            '<p class="warn">More than 10 % of the cortical voxels have an implausible thickness: check the '
            "grey/white segmentation and the brain mask.</p>"
        )
    regions = record.get("regions", {})
    names = list(dict.fromkeys([*regions.get("lh", {}), *regions.get("rh", {})]))
    if names:
        rows = [
            [escape(n), _number(regions.get("lh", {}).get(n)), _number(regions.get("rh", {}).get(n))]
            for n in names
        ]
        content += "<h3>Desikan-Killiany regions (mm)</h3>" + table(
            ["region", "left", "right"], rows, numeric=[False, True, True]
        )
    return section("thickness", "Cortical thickness", how, content)
