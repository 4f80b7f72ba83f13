"""Tests for smriflow.data.templates: offline templates, deterministic cache, TemplateFlow cache lookup."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest

from smriflow.data import templates
from smriflow.data.templates import (
    TemplateNotFoundError,
    get_template,
    template_cache_dir,
    template_space_name,
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SMRIFLOW_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _sha(path: Path) -> str:
    return hashlib.sha256(np.asarray(nb.load(path).dataobj).tobytes()).hexdigest()


def test_space_name():
    assert template_space_name("MNI152NLin2009aSym") == "MNI152NLin2009aSym"
    assert template_space_name("tpl-OASIS30ANTs") == "OASIS30ANTs"
    assert template_space_name("MNIPediatricAsym:cohort-1") == "MNIPediatricAsym"
    with pytest.raises(ValueError, match="'name' must be alphanumeric"):
        template_space_name("MNI_152")
    with pytest.raises(ValueError, match="non-empty"):
        template_space_name("")


def test_cache_dir_follows_env(cache):
    assert template_cache_dir().is_relative_to(cache)


def test_default_t1w_1mm_is_nilearn_template(cache):
    from nilearn.datasets import load_mni152_template

    path = get_template()
    assert path.is_relative_to(cache)
    assert path.name == "tpl-MNI152NLin2009aSym_res-1_desc-brain_T1w.nii.gz"
    img = nb.load(path)
    ref = load_mni152_template(resolution=1)
    assert img.shape == ref.shape == (197, 233, 189)
    np.testing.assert_allclose(img.affine, ref.affine)
    np.testing.assert_allclose(img.get_fdata(), ref.get_fdata(), atol=1e-6)
    assert img.header.get_sform(coded=True)[1] == 4


def test_mask_and_probsegs_1mm(cache):
    mask = np.asarray(nb.load(get_template(suffix="mask")).dataobj)
    assert mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1}
    probs = {
        lab: nb.load(get_template(suffix="probseg", label=lab)).get_fdata() for lab in ("GM", "WM", "CSF")
    }
    for prob in probs.values():
        assert prob.min() >= 0 and prob.max() <= 1
    # CSF is what the GM and WM maps leave of a brain voxel: inside the mask the three sum to max(1, GM+WM)
    total = probs["GM"] + probs["WM"] + probs["CSF"]
    inside = mask > 0
    np.testing.assert_allclose(total[inside], np.maximum(1.0, probs["GM"] + probs["WM"])[inside], atol=1e-5)
    assert np.all(probs["CSF"][~inside] == 0)
    # a plausible brain volume (ml)
    assert 1500 < mask.sum() / 1000 < 2200


def test_2mm_grid_and_determinism(cache, tmp_path, monkeypatch):
    t1 = get_template(resolution=2)
    img = nb.load(t1)
    assert img.shape == (99, 117, 95)
    np.testing.assert_allclose(np.diag(img.affine)[:3], 2.0)
    np.testing.assert_allclose(img.affine[:3, 3], nb.load(get_template()).affine[:3, 3])
    gm2 = get_template(resolution=2, suffix="probseg", label="GM")
    first = {p: _sha(p) for p in (t1, gm2, get_template(resolution=2, suffix="mask"))}
    # a fresh cache rebuilds byte-identical data; a second call reuses the cached file
    mtime = t1.stat().st_mtime_ns
    assert get_template(resolution=2) == t1 and t1.stat().st_mtime_ns == mtime
    monkeypatch.setenv("SMRIFLOW_CACHE", str(tmp_path / "other"))
    for path, digest in first.items():
        again = template_cache_dir() / path.parent.name / path.name
        rebuilt = get_template(
            resolution=2,
            suffix=path.name.rsplit("_", 1)[1].split(".")[0],
            label="GM" if "label-GM" in path.name else None,
        )
        assert rebuilt == again
        assert _sha(rebuilt) == digest
    assert not list((tmp_path / "other").rglob(".*"))  # no temporary files left behind


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"suffix": "bold"}, "'suffix' must be one of"),
        ({"suffix": "probseg"}, "'label' must be one of"),
        ({"suffix": "probseg", "label": "GMX"}, "'label' must be one of"),
        ({"label": "GM"}, "'label' applies only to suffix 'probseg'"),
        ({"resolution": 3}, "'resolution' must be 1 or 2 for MNI152NLin2009aSym. 3 was provided."),
        ({"resolution": 0}, "'resolution' must be a positive integer"),
        ({"resolution": 1.5}, "'resolution' must be a positive integer"),
    ],
)
def test_bad_arguments(cache, kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_template(**kwargs)


def test_default_template_has_no_head_image(cache):
    with pytest.raises(TemplateNotFoundError, match="ships only skull-stripped images"):
        get_template(desc=None)


def _fake_tf(home: Path, name: str, filename: str, size: int) -> Path:
    folder = home / f"tpl-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    if size:
        img = nb.Nifti1Image(np.random.default_rng(0).random((16, 16, 16)).astype(np.float32), np.eye(4))
        nb.save(img, path)
    else:
        path.touch()
    return path


def test_templateflow_cached_file_is_used(tmp_path, monkeypatch):
    home = tmp_path / "tf"
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))
    real = _fake_tf(home, "OASIS30ANTs", "tpl-OASIS30ANTs_res-01_desc-brain_T1w.nii.gz", 1)
    _fake_tf(home, "OASIS30ANTs", "tpl-OASIS30ANTs_res-01_T1w.nii.gz", 1)
    _fake_tf(home, "OASIS30ANTs", "tpl-OASIS30ANTs_res-01_label-GM_probseg.nii.gz", 1)
    assert get_template("OASIS30ANTs") == real
    assert get_template("OASIS30ANTs", desc=None).name == "tpl-OASIS30ANTs_res-01_T1w.nii.gz"
    assert get_template("OASIS30ANTs", suffix="probseg", label="GM").name.endswith("label-GM_probseg.nii.gz")


def test_templateflow_stub_is_not_downloaded(tmp_path, monkeypatch):
    home = tmp_path / "tf"
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))
    _fake_tf(home, "MNI152NLin2009cAsym", "tpl-MNI152NLin2009cAsym_res-01_desc-brain_mask.nii.gz", 0)
    with pytest.raises(TemplateNotFoundError) as info:
        get_template("MNI152NLin2009cAsym", suffix="mask")
    message = str(info.value)
    assert "\n" not in message
    assert "'MNI152NLin2009cAsym'" in message
    assert "t.get('MNI152NLin2009cAsym')" in message
    assert "TEMPLATEFLOW_HOME" in message


def test_unknown_template_names_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "empty"))
    with pytest.raises(TemplateNotFoundError, match="Template 'Foo123'"):
        get_template("Foo123")


def test_lookup_never_imports_templateflow(tmp_path, monkeypatch):
    # templateflow's own `get` downloads stub files: the lookup must read the folder itself
    monkeypatch.setitem(__import__("sys").modules, "templateflow", None)
    home = tmp_path / "tf"
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))
    real = _fake_tf(home, "NKI", "tpl-NKI_res-01_desc-brain_mask.nii.gz", 1)
    assert get_template("NKI", suffix="mask") == real


def test_unwritable_cache_falls_back_to_tmp(tmp_path, monkeypatch):
    cache = tmp_path / "ro"
    monkeypatch.setenv("SMRIFLOW_CACHE", str(cache))
    monkeypatch.setattr(templates.tempfile, "tempdir", str(tmp_path / "tmp"))
    real_save = templates._atomic_save

    def save(img, out):  # a read-only home, whatever the user running the tests
        if out.is_relative_to(cache):
            raise PermissionError(13, "Permission denied")
        real_save(img, out)

    monkeypatch.setattr(templates, "_atomic_save", save)
    with pytest.warns(RuntimeWarning, match="Cannot write the template cache .* Set SMRIFLOW_CACHE"):
        path = get_template(suffix="mask", resolution=2)
    assert path.is_relative_to(tmp_path / "tmp") and path.is_file()
    assert path.name == "tpl-MNI152NLin2009aSym_res-2_desc-brain_mask.nii.gz"


def test_available_templates_are_the_default_and_the_downloaded_ones(
    templateflow_home, tmp_path, monkeypatch
):
    """A TemplateFlow folder counts when it holds a downloaded T1w, not only empty stubs."""
    assert templates.available_templates() == ["MNI152NLin2009aSym", "MNI152NLin6Asym"]
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "nowhere"))
    assert templates.available_templates() == ["MNI152NLin2009aSym"]
