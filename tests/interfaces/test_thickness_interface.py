"""CorticalThickness: the files it writes from GM/WM/CSF and two atlases, and its no-op when disabled."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "anat"))
from test_thickness import _band, spheres  # noqa: E402

from smriflow.interfaces.thickness import CorticalThickness, row_name  # noqa: E402


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("thickness_interface")
    gm, wm = spheres(2.5)
    left = np.arange(40)[:, None, None] < 20
    images = {
        "gm": gm,
        "wm": wm,
        "csf": np.clip(1 - gm - wm, 0, 1),
        "dk": np.where(_band(gm, wm), np.where(left, 1001, 2001), 0).astype(np.int32),
        "destrieux": np.where(gm + wm > 0.2, np.where(left, 11101, 12101), 0).astype(np.int32),
    }
    paths = {}
    for name, data in images.items():
        paths[name] = str(folder / f"{name}.nii.gz")
        nb.Nifti1Image(data, np.eye(4)).to_filename(paths[name])
    return paths


def _node(inputs, **kwargs):
    return CorticalThickness(
        in_tpms=[inputs["gm"], inputs["wm"], inputs["csf"]],
        dk_dseg=inputs["dk"],
        destrieux_dseg=inputs["destrieux"],
        source_file="/data/sub-07/ses-1/anat/sub-07_ses-1_T1w.nii.gz",
        **kwargs,
    )


def test_writes_the_map_tables_and_record(inputs, tmp_path):
    out = _node(inputs).run(cwd=tmp_path).outputs
    thickness = nb.load(out.out_thickness).get_fdata()
    region = np.asanyarray(nb.load(out.out_region).dataobj)
    assert np.array_equal(thickness > 0, region > 0)
    assert [Path(p).name for p in out.out_dk_tables] == [
        "hemi-lh_atlas-desikankilliany.tsv",
        "hemi-rh_atlas-desikankilliany.tsv",
    ]
    lh = pd.read_csv(out.out_dk_tables[0], sep="\t")
    assert list(lh.columns[:2]) == ["lh.aparc.thickness", "lh_bankssts_thickness"]
    assert lh.iloc[0, 0] == "sub-07"  # the session is not part of the row (as in the volumes tables)
    destrieux = pd.read_csv(out.out_destrieux_tables[1], sep="\t")
    assert destrieux.columns[0] == "rh.aparc.a2009s.thickness"
    record = json.loads(Path(out.out_record).read_text())
    assert record["iqms"]["thickness_mean_lh"] == pytest.approx(lh["lh_MeanThickness_thickness"].iloc[0])
    assert record["voxels"] == int((thickness > 0).sum())


def test_the_t1w_moves_the_grey_white_boundary(inputs, tmp_path):
    # the T1w's GM/WM edge is 0.4 mm outside the memberships' (true WM radius 12.4 mm, not 12): thinner
    gm, wm = spheres(2.1, radius=12.4)
    t1w = str(tmp_path / "t1w.nii.gz")
    nb.Nifti1Image(wm + 0.62 * gm + 0.2 * (1 - gm - wm), np.eye(4)).to_filename(t1w)
    (tmp_path / "plain").mkdir()
    (tmp_path / "edged").mkdir()
    plain = _node(inputs).run(cwd=tmp_path / "plain").outputs
    edged = _node(inputs, in_t1w=t1w).run(cwd=tmp_path / "edged").outputs
    before = nb.load(plain.out_thickness).get_fdata()
    after = nb.load(edged.out_thickness).get_fdata()
    assert np.array_equal(before > 0, after > 0)  # the same cortex
    assert np.median(before[before > 0]) == pytest.approx(2.5, abs=0.2)
    assert np.median(after[after > 0]) == pytest.approx(2.1, abs=0.15)
    for outputs, boundary in ((plain, "memberships (WM = 0.5)"), (edged, "T1w edge")):
        assert json.loads(Path(outputs.out_record).read_text())["gm_wm_boundary"].startswith(boundary)


def test_disabled_does_nothing(inputs, tmp_path):
    out = _node(inputs, enabled=False).run(cwd=tmp_path).outputs
    assert all(not isinstance(v, str) for v in out.get().values())  # every output undefined
    assert not list(tmp_path.glob("*.nii.gz")) and not list(tmp_path.glob("*.tsv"))


def test_row_name_needs_a_subject():
    assert row_name("sub-0002_T1w.nii.gz") == "sub-0002"
    with pytest.raises(ValueError, match="sub-<label>"):
        row_name("T1w.nii.gz")
