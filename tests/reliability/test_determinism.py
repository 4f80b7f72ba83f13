"""``--seed`` reaches the random parts and is recorded; the same seed gives the same bytes.

A small workflow made of ``anat_preproc``'s first stages (conform, N4, brain extraction, whose affine
registration samples the image at seeded random points) on the 3 mm shared T1w, run three times: seed 7,
seed 8, seed 7 again. The identical-rerun property of the whole ``anat_preproc`` (default seed) is in
``test_corpus.py`` (a killed and resumed run gives the uninterrupted run's bytes).
"""

from __future__ import annotations

import json

import _anat_data
import _faults
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ants, pytest.mark.shared]

WORKFLOW = """\
smriflow: 1
name: front_wf
doc: conform, N4 and brain extraction
inputs:
  t1w: {bids: {datatype: anat, suffix: T1w, extension: [.nii, .nii.gz]}}
outputs:
  mask: {from: brain.out_mask, bids: {desc: brain, suffix: mask}}
  affine: {from: brain.out_affine, bids: {from: T1w, to: MNI152NLin2009aSym, mode: image, suffix: xfm}}
nodes:
  conform: {interface: ConformImage, in: {in_file: inputs.t1w}}
  n4: {interface: N4BiasCorrect, in: {in_file: conform.out_file}}
  brain: {interface: BrainExtraction, in: {in_file: n4.out_file}}
"""


def test_seed_changes_the_random_parts_is_recorded_and_repeats(shared_data, tmp_path):
    anat = tmp_path / "bids" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    _anat_data.t1w_3mm(shared_data, anat)
    (anat / "sub-0002_T1w.nii.gz").rename(anat / "sub-01_T1w.nii.gz")
    (tmp_path / "bids" / "dataset_description.json").write_text('{"Name": "seed", "BIDSVersion": "1.8.0"}')
    spec = tmp_path / "front.yml"
    spec.write_text(WORKFLOW)
    outputs = {}
    for run, seed in (("a", 7), ("b", 8), ("c", 7)):
        out = tmp_path / f"out_{run}"
        done = _faults.smriflow(
            "run", spec, "--bids-dir", tmp_path / "bids", "--output-dir", out,
            "--work-dir", tmp_path / f"work_{run}", "--seed", seed, "--nprocs", "1",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        outputs[run] = _faults.tree_digest(out / "sub-01")
        for sidecar in (out / "sub-01" / "anat").glob("*.json"):
            generated = json.loads(sidecar.read_text())["GeneratedBy"][0]
            assert generated["Args"]["seed"] == seed and generated["Threads"] == 1, sidecar.name
    affine = "anat/sub-01_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.mat"
    assert affine in outputs["a"], sorted(outputs["a"])
    assert outputs["a"][affine] != outputs["b"][affine]  # another seed: another registration
    assert outputs["a"] == outputs["c"]  # the same seed: the same bytes, sidecars included
