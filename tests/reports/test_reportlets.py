"""Reportlets on a synthetic subject: valid SVG, the layers they claim (colours), alignment, reruns."""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET

import _report_data
import nibabel as nb
import numpy as np
import pytest

from smriflow.reports import reportlets as rl

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return _report_data.write_subject(tmp_path_factory.mktemp("reportlets"))


@pytest.fixture(scope="module")
def cuts(subject):
    return rl.cut_coords(subject.t1w_mask, 5)


def embedded_pngs(svg: str) -> list[np.ndarray]:
    """The raster images an SVG embeds (RGBA arrays, 0-255)."""
    from matplotlib.image import imread

    found = re.findall(r'xlink:href="data:image/png;base64,([^"]+)"', svg)
    return [(imread(io.BytesIO(base64.b64decode(data)), format="png") * 255).round() for data in found]


def has_colour(svg: str, hex_colour: str, tolerance: float = 40, min_alpha: float = 200) -> bool:
    """Whether any embedded raster has an opaque pixel close to ``hex_colour``."""
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=float)
    for image in embedded_pngs(svg):
        rgb, alpha = image[..., :3], image[..., 3] if image.shape[-1] == 4 else np.full(image.shape[:2], 255)
        close = np.abs(rgb - target).max(-1) < tolerance
        if (close & (alpha > min_alpha)).any():
            return True
    return False


def test_cut_coords_span_the_mask(subject):
    img = nb.load(subject.t1w_mask)
    xyz = nb.affines.apply_affine(img.affine, np.argwhere(np.asanyarray(img.dataobj) > 0))
    cuts = rl.cut_coords(img, 6, margin=0.1)
    for axis, key in enumerate("xyz"):
        low, high = xyz[:, axis].min(), xyz[:, axis].max()
        assert len(cuts[key]) == 6 and cuts[key] == sorted(cuts[key])
        assert cuts[key][0] == pytest.approx(low + 0.1 * (high - low), abs=0.05)
        assert cuts[key][-1] == pytest.approx(high - 0.1 * (high - low), abs=0.05)


def test_empty_mask_is_refused(tmp_path):
    path = tmp_path / "empty_mask.nii.gz"
    nb.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)).to_filename(str(path))
    with pytest.raises(ValueError, match=r"empty_mask\.nii\.gz: the mask is empty"):
        rl.cut_coords(path)
    with pytest.raises(ValueError, match="the mask is empty"):
        rl.crop_box(path)


def test_crop_keeps_world_coordinates(subject):
    box = rl.crop_box(subject.t1w_mask, margin_mm=6.0)
    full = nb.load(subject.t1w_preproc)
    cropped = rl.crop(full, box)
    assert cropped.shape == tuple(s.stop - s.start for s in box)
    # the same voxel has the same world position and value in both
    ijk = np.array([s.start for s in box]) + 2
    world = nb.affines.apply_affine(full.affine, ijk)
    back = np.round(nb.affines.apply_affine(np.linalg.inv(cropped.affine), world)).astype(int)
    assert np.asanyarray(cropped.dataobj)[tuple(back)] == pytest.approx(
        np.asanyarray(full.dataobj)[tuple(ijk)]
    )
    mask = np.asanyarray(nb.load(subject.t1w_mask).dataobj)
    assert (
        np.asanyarray(rl.crop(subject.t1w_mask, box).dataobj).sum() == mask.sum()
    )  # nothing of the mask lost
    with pytest.raises(ValueError, match="does not fit the image"):
        rl.crop(nb.Nifti1Image(np.zeros((3, 3, 3), np.float32), np.eye(4)), box)


def test_robust_range_is_the_percentiles_of_nonzero_voxels(subject):
    data = np.asanyarray(nb.load(subject.t1w_preproc).dataobj, dtype=np.float32)
    low, high = rl.robust_range(subject.t1w_preproc)
    expected = np.percentile(data[data != 0], [0.5, 99.5])
    assert (low, high) == pytest.approx(tuple(expected), abs=1e-4)
    mask = np.asanyarray(nb.load(subject.t1w_mask).dataobj) > 0
    inside = rl.robust_range(subject.t1w_preproc, subject.t1w_mask, percentiles=(1, 99))
    assert inside == pytest.approx(tuple(np.percentile(data[mask], [1, 99])), abs=1e-4)


def test_label_colormap_separates_neighbours():
    cmap = rl.label_colormap(40)
    assert cmap.N == 41 and cmap(0)[3] == 0.0  # background transparent
    colours = [cmap(k)[:3] for k in range(1, 41)]
    assert all(colours[k] != colours[k + 1] for k in range(39))
    assert all(cmap(k)[3] == 1.0 for k in range(1, 41))


def test_mosaic_is_valid_svg_with_one_raster_per_slice(subject, cuts):
    svg = rl.input_svg(subject.t1w, cuts)
    root = ET.fromstring(svg.encode())
    assert root.tag == f"{SVG}svg"
    width, height = (float(root.get(k).removesuffix("pt")) for k in ("width", "height"))
    assert (width, height) == pytest.approx((720.0, 3 * 1.9 * 72))  # 10 in × 3 rows of 1.9 in
    assert len(root.findall(f".//{SVG}image")) == len(embedded_pngs(svg))  # every raster is inline PNG
    # nilearn draws black frames under the slices; the slices are the rasters that show something
    slices = [image for image in embedded_pngs(svg) if image[..., :3].max() > 0]
    assert len(slices) == 15  # 3 rows × 5 cuts
    assert "Date" not in svg and "<dc:date>" not in svg


def test_contours_are_drawn_in_their_colours(subject, cuts):
    plain = rl.input_svg(subject.t1w_preproc, cuts)
    assert not has_colour(plain, rl.MASK_COLOR)
    assert has_colour(rl.mask_svg(subject.t1w_preproc, subject.t1w_mask, cuts), rl.MASK_COLOR)
    tissues = rl.tissue_svg(subject.t1w_preproc, subject.t1w_dseg, cuts)
    for _, _, colour in rl.TISSUE_COLORS:
        assert has_colour(tissues, colour), colour
        assert not has_colour(plain, colour)


def test_bias_field_range_and_atlas_overlay(subject, cuts):
    corrected, field, (low, high) = rl.bias_svgs(
        subject.t1w_preproc, subject.t1w_biasfield, subject.t1w_mask, cuts
    )
    data = np.asanyarray(nb.load(subject.t1w_biasfield).dataobj)
    mask = np.asanyarray(nb.load(subject.t1w_mask).dataobj) > 0
    assert (low, high) == pytest.approx(tuple(np.percentile(data[mask], [1, 99])), abs=1e-4)
    assert ET.fromstring(corrected.encode()) is not None and ET.fromstring(field.encode()) is not None
    assert has_colour(field, rl.FIELD_OUTLINE_COLOR, tolerance=10)  # the mask's outline, for orientation
    bare = rl.mosaic_svg(subject.t1w_biasfield, cuts, cmap="magma", vmin=low, vmax=high)
    assert not has_colour(bare, rl.FIELD_OUTLINE_COLOR, tolerance=10)  # magma itself has no white
    atlas = rl.atlas_svg(subject.t1w_preproc, subject.atlas_dseg[0], cuts)
    assert len(ET.fromstring(atlas.encode()).findall(f".//{SVG}image")) >= 5  # one row of axial cuts
    # each of the four quadrant labels is drawn in its colour of label_colormap (a semi-transparent layer)
    cmap = rl.label_colormap(4)
    for label in range(1, 5):
        colour = "#" + "".join(f"{round(c * 255):02x}" for c in cmap(label)[:3])
        assert has_colour(atlas, colour, tolerance=3, min_alpha=100), label
    unused = rl.label_colormap(10)(7)  # a colour no quadrant has
    assert not has_colour(atlas, "#" + "".join(f"{round(c * 255):02x}" for c in unused[:3]), tolerance=3)


def test_registration_layers_align(subject, tmp_path):
    from smriflow.data.templates import get_template

    std = _report_data.std_t1w(tmp_path)
    subject_svg, template_svg = rl.registration_svgs(
        std, get_template(resolution=1), get_template(resolution=1, suffix="mask")
    )  # the 1 mm template is resampled to the 2 mm grid of std_t1w
    roots = [ET.fromstring(svg.encode()) for svg in (subject_svg, template_svg)]
    assert [r.get("viewBox") for r in roots] == [roots[0].get("viewBox")] * 2
    positions = [
        [(i.get("x"), i.get("y"), i.get("width"), i.get("height")) for i in r.findall(f".//{SVG}image")]
        for r in roots
    ]
    assert positions[0] == positions[1]  # slice for slice at the same place: the flicker aligns
    assert has_colour(subject_svg, rl.MASK_COLOR) and has_colour(template_svg, rl.MASK_COLOR)
    assert subject_svg != template_svg


def test_reportlets_are_deterministic(subject, cuts):
    first = rl.tissue_svg(subject.t1w_preproc, subject.t1w_dseg, cuts)
    assert rl.tissue_svg(subject.t1w_preproc, subject.t1w_dseg, cuts) == first
