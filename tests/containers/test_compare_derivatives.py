"""containers/compare_derivatives.py: what CI accepts as the same derivatives in and out of a container."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("compare", REPO / "containers" / "compare_derivatives.py")
compare_derivatives = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_derivatives)


def _derivatives(root: Path, *, spec: str, source: str, log_time: str) -> Path:
    (root / "sub-01" / "anat").mkdir(parents=True)
    (root / "sub-01" / "anat" / "sub-01_desc-brain_mask.nii.gz").write_bytes(b"\x1f\x8b mask")
    (root / "sub-01" / "anat" / "sub-01_desc-brain_mask.json").write_text('{"Type": "Brain"}\n')
    description = {
        "Name": "smriflow derivatives",
        "GeneratedBy": [
            {
                "Name": "smriflow",
                "Workflow": {"Name": "anat_preproc_wf", "Spec": spec, "Args": {"seed": 7}},
                "ExecutionConfig": {"Source": source, "omp_nthreads": 1},
            }
        ],
    }
    (root / "dataset_description.json").write_text(json.dumps(description, indent=2) + "\n")
    (root / "logs").mkdir()
    for suffix in ("json", "log"):
        (root / "logs" / f"run-20261206-{log_time}.{suffix}").write_text(f"started at {log_time}\n")
    return root


@pytest.fixture
def pair(tmp_path):
    outside = _derivatives(
        tmp_path / "outside",
        spec="/src/smriflow/workflows/anat_preproc.yml",
        source="/src/smriflow/configs/local.yml",
        log_time="013125",
    )
    inside = _derivatives(
        tmp_path / "inside",
        spec="/opt/venv/lib/python3.11/site-packages/smriflow/data/workflows/anat_preproc.yml",
        source="/opt/venv/lib/python3.11/site-packages/smriflow/data/configs/local.yml",
        log_time="020000",
    )
    return outside, inside


def test_runs_differing_only_in_run_logs_and_packaged_file_locations_are_equal(pair, capsys):
    assert compare_derivatives.compare(*pair) == []
    assert compare_derivatives.main([str(p) for p in pair]) == 0
    assert "3 files equal (run logs excepted)" in capsys.readouterr().out


def test_a_changed_byte_a_missing_file_and_another_workflow_are_reported(pair):
    outside, inside = pair
    (inside / "sub-01" / "anat" / "sub-01_desc-brain_mask.nii.gz").write_bytes(b"\x1f\x8b masK")
    (outside / "sub-01" / "anat" / "sub-01_desc-brain_mask.json").unlink()
    description = json.loads((inside / "dataset_description.json").read_text())
    description["GeneratedBy"][0]["Workflow"]["Spec"] = "/elsewhere/my_preproc.yml"
    (inside / "dataset_description.json").write_text(json.dumps(description, indent=2) + "\n")
    (inside / "logs" / "run-20261206-030000.log").write_text("a second run\n")
    problems = compare_derivatives.compare(outside, inside)
    assert problems[0] == "run logs: 2 outside, 3 inside"
    assert "only inside: sub-01/anat/sub-01_desc-brain_mask.json" in problems
    assert "differs: sub-01/anat/sub-01_desc-brain_mask.nii.gz" in problems
    assert any(p.startswith("differs: dataset_description.json") for p in problems)
    assert len(problems) == 4
    assert compare_derivatives.main([str(outside), str(inside)]) == 1


def test_other_arguments_are_a_difference(pair):
    outside, inside = pair
    description = json.loads((inside / "dataset_description.json").read_text())
    description["GeneratedBy"][0]["Workflow"]["Args"]["seed"] = 8
    (inside / "dataset_description.json").write_text(json.dumps(description, indent=2) + "\n")
    assert compare_derivatives.compare(outside, inside) == [
        "differs: dataset_description.json (beyond the packaged files' locations "
        "(['/src/smriflow/workflows/anat_preproc.yml', '/src/smriflow/configs/local.yml'], "
        "['/opt/venv/lib/python3.11/site-packages/smriflow/data/workflows/anat_preproc.yml', "
        "'/opt/venv/lib/python3.11/site-packages/smriflow/data/configs/local.yml']))"
    ]
