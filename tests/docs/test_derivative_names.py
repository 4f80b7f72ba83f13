"""The derivative names the docs list are the names the sinks of ``smriflow run`` write.

The subject workflow of ``anat_preproc`` is built as ``smriflow run`` builds it (for a subject with a T1w, a
T2w, a FLAIR and a lesion mask, so every optional output has its sink), then each sink (``ds_<output>``)
runs for real on a small stand-in file of the kind its node makes. The files they write must be the ones
README.md's generated table lists, output by output.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
from _docs_data import data_files, documented_files, expand

from smriflow.engine.builder import resolve_args
from smriflow.engine.derivatives import build_subject_workflow
from smriflow.engine.naming import DEFAULT_EXTENSION, mapped_items, output_entities
from smriflow.engine.registry import packaged_workflows
from smriflow.engine.validate import validate_file

LABEL = "01"
#: One further space (--output-spaces <template> MNI152NLin6Asym:res-2), so its sinks write too.
FURTHER = {"spaces": ["MNI152NLin6Asym"], "spaces_res": [2]}


def stand_in(path: Path, extension: str) -> Path:
    """A small file of the kind the output's node makes."""
    path = path.with_name(path.name + extension)
    if extension in (".nii.gz", ".nii"):
        nb.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)).to_filename(str(path))
    else:
        path.write_text("{}\n" if extension == ".json" else "stand-in\n")
    return path


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, set[str]]:
    """Output port → files its sink wrote (relative to the output folder; sidecars left out)."""
    root = tmp_path_factory.mktemp("sinks")
    bids, out = root / "bids", root / "out"
    anat = bids / f"sub-{LABEL}" / "anat"
    anat.mkdir(parents=True)
    files = {
        name: str(stand_in(anat / f"sub-{LABEL}_{suffix}", ".nii.gz"))
        for name, suffix in [
            ("t1w", "T1w"),
            ("t2w", "T2w"),
            ("flair", "FLAIR"),
            ("lesion_mask", "label-lesion_roi"),
        ]
    }
    files["t1w"] = [files["t1w"]]
    loaded = validate_file(packaged_workflows()["anat_preproc"])
    cache = root / "templateflow" / f"tpl-{FURTHER['spaces'][0]}"  # "installed": nothing reads it here
    cache.mkdir(parents=True)
    (cache / f"{cache.name}_res-01_desc-brain_T1w.nii.gz").write_bytes(b"\0" * 2048)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEMPLATEFLOW_HOME", str(cache.parent))
        args = resolve_args(loaded, FURTHER)
    sub_wf = build_subject_workflow(loaded, args, LABEL, {None: files}, bids_dir=bids, output_dir=out)
    found: dict[str, set[str]] = {}
    for port, spec in loaded.spec.outputs.items():
        node = sub_wf.get_node(f"ds_{port}")
        if node is None:
            continue
        entities = output_entities(spec, args)
        items = mapped_items(spec, entities)
        if items:  # a MapNode sink: one item per further space, each of the files its entities name
            work = root / "work" / port
            work.mkdir(parents=True)
            count = max([len(v) for v in items[0].values() if isinstance(v, list)], default=1)
            extension = entities.get("extension", DEFAULT_EXTENSION)
            stems = [[work / f"{port}_{i}_{j}" for j in range(count)] for i in range(len(items))]
            paths = [[str(stand_in(stem, extension)) for stem in item] for item in stems]
            node.inputs.in_file = [item if count > 1 else item[0] for item in paths]
            node.base_dir = str(work)
            before = {p for p in out.rglob("*") if p.is_file()}
            node.run()
            found[port] = data_files(out, {p for p in out.rglob("*") if p.is_file()} - before)
            continue
        count = max([len(v) for v in entities.values() if isinstance(v, list)], default=1)
        extension = entities.get("extension", DEFAULT_EXTENSION)
        if spec.path is not None:  # the report: a file the workflow names, into a folder
            extension, stem = ".html", f"sub-{LABEL}"
        else:
            stem = f"{port}_"
        work = root / "work" / port
        work.mkdir(parents=True)
        inputs = [
            str(stand_in(work / f"{stem}{i}" if count > 1 else work / stem, extension)) for i in range(count)
        ]
        node.interface.inputs.in_file = inputs if count > 1 else inputs[0]
        before = {p for p in out.rglob("*") if p.is_file()}
        node.interface.run(cwd=str(work))
        new = {p for p in out.rglob("*") if p.is_file()} - before
        found[port] = data_files(out, new)
    return found


def test_every_sink_writes_what_the_readme_lists(written):
    loaded = validate_file(packaged_workflows()["anat_preproc"])
    lists = {name: arg.default for name, arg in loaded.spec.args.items() if isinstance(arg.default, list)}
    lists.update(FURTHER)
    documented = documented_files()
    assert set(written) == set(documented)  # every written output is documented, and only those
    for port, name in documented.items():
        if name.endswith("…"):  # a folder that receives the files the workflow names
            assert all(f.startswith(name.removesuffix("…").removeprefix("./")) for f in written[port])
            assert written[port] == {f"sub-{LABEL}.html"}
            continue
        assert written[port] == expand(name, LABEL, lists), port


def test_optional_outputs_are_documented(written):
    optional = {
        p
        for p, o in validate_file(packaged_workflows()["anat_preproc"]).spec.outputs.items()
        if not o.required
    }
    thickness = {"thickness", "thickness_region", "thickness_dk", "thickness_destrieux"}  # --set thickness
    assert optional == {"t2w_t1w", "t1w2t2w_xfm", "flair_t1w", "t1w2flair_xfm", "lesion_mask"} | thickness
    assert optional <= set(documented_files()) and optional <= set(written)
