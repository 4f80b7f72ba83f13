"""Two ``smriflow run`` processes writing into one output folder at the same time, for different subjects.

Neither corrupts the other's files nor ``dataset_description.json``: the merged folder is byte for byte
the folder one run of all subjects writes, and each run keeps its own log. (The same subject twice is
refused: ``test_corpus.py`` for the command, ``test_locks.py`` for the lock itself.)
"""

from __future__ import annotations

import json

import _faults
import pytest
from conftest import write_synthetic_t1w

pytestmark = pytest.mark.xdist_group("reliability_concurrency")


@pytest.fixture
def bids(tmp_path):
    root = tmp_path / "bids"
    for index in range(8):
        write_synthetic_t1w(root / f"sub-{index:02d}" / "anat" / f"sub-{index:02d}_T1w.nii.gz", seed=index)
    (root / "dataset_description.json").write_text('{"Name": "concurrency", "BIDSVersion": "1.8.0"}')
    return root


def test_two_runs_on_different_subjects_of_one_folder(tmp_path, bids):
    shared = tmp_path / "shared" / "smriflow"
    common = ("run", "example", "--bids-dir", bids, "--output-dir", shared, "--nprocs", "1")
    first = _faults.start(*common, "--participant-label", "00", "01", "02", "03", log=tmp_path / "first.txt")
    second = _faults.start(
        *common, "--participant-label", "04", "05", "06", "07", log=tmp_path / "second.txt"
    )
    try:
        assert [first.wait(300), second.wait(300)] == [0, 0], (tmp_path / "first.txt").read_text() + (
            tmp_path / "second.txt"
        ).read_text()
    finally:
        _faults.kill_group(first)
        _faults.kill_group(second)
    alone = tmp_path / "alone" / "smriflow"
    done = _faults.smriflow("run", "example", "--bids-dir", bids, "--output-dir", alone, "--nprocs", "1")
    assert done.returncode == 0, done.stdout + done.stderr

    merged, reference = _faults.tree_digest(shared), _faults.tree_digest(alone)
    assert sorted(merged) == sorted(reference)  # no temporary, lock or stray file either
    assert len([name for name in merged if name.startswith("sub-")]) == 8 * 7
    assert merged == reference
    description = json.loads((shared / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Workflow"]["Name"] == "example_wf"
    logs = sorted(path.name for path in (shared / "logs").iterdir())
    assert len(logs) == 4 and len({name.rsplit(".", 1)[0] for name in logs}) == 2  # a .log and .json each
    records = [json.loads((shared / "logs" / name).read_text()) for name in logs if name.endswith(".json")]
    assert sorted(sorted(record["subjects"]) for record in records) == [
        ["00", "01", "02", "03"],
        ["04", "05", "06", "07"],
    ]
