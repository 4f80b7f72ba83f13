"""Convert deepbet's two TorchScript networks to the ONNX files shipped in ``smriflow/data/deepbet/``.

This is how the shipped files were made; it is not part of the wheel and nothing at run time needs torch.
deepbet 1.0.2 (Fisch et al., 2024; MIT licence, Medical Machine Learning Lab, University of Münster) keeps
two LinkNet3d networks in its wheel, in ``site-packages/data/models/``:

- ``bbox_model.pt``: a 128³ net that finds the brain's bounding box on a nearest-neighbour thumbnail;
- ``model.pt``: a 256³ net that segments the brain inside that box (resampled to 256³).

Both take ``(1, 1, D, H, W)`` float32 and return the softmax ``(1, 2, D, H, W)``; channel 1 is "brain".
They are exported unchanged (same weights, float32, fixed input shape) with the TorchScript exporter, then
checked against torch on random input. Run it in a separate environment, never in smriflow's own::

    python -m venv /tmp/venv-deepbet && . /tmp/venv-deepbet/bin/activate
    pip install torch==2.13.0        # a CPU build first, so pip does not fetch a CUDA one
    pip install deepbet==1.0.2 onnx onnxruntime
    python tools/convert_deepbet_onnx.py smriflow/data/deepbet

It prints the SHA-256 of each file: copy them into ``MODELS`` of
``smriflow/anat/brain_extraction/learned.py``. With ``--check-resize`` it also checks the index arithmetic
that ``learned.py`` uses in place of ``torch.nn.functional.interpolate(mode="nearest-exact")``.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np

OPSET = 17  # onnxruntime >= 1.14 runs it
MODELS = {"bbox_model.pt": ("deepbet_bbox.onnx", 128), "model.pt": ("deepbet_mask.onnx", 256)}


def deepbet_models_dir() -> Path:
    """The folder of deepbet's TorchScript models (``site-packages/data/models``)."""
    from deepbet.utils import DATA_PATH

    return Path(DATA_PATH) / "models"


def export(src: Path, dst: Path, size: int) -> str:
    """Export one TorchScript model to ONNX, compare with torch on random input, return the SHA-256."""
    import onnxruntime as ort
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.jit.load(str(src), map_location="cpu").eval()
        x = torch.randn(1, 1, size, size, size, generator=torch.Generator().manual_seed(0)) * 0.226 + 0.449
        torch.onnx.export(
            model,
            (x,),
            str(dst),
            input_names=["image"],
            output_names=["probabilities"],
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
            external_data=False,
        )
        with torch.no_grad():
            ref = model(x).numpy()
    sess = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"image": x.numpy()})[0]
    diff = np.abs(out - ref)
    err = float(diff.max())
    print(
        f"{dst.name}: |onnx - torch| max {err:.2e}, mean {diff.mean():.2e} on random input (float32 noise)",
        file=sys.stderr,
    )
    if err > 5e-2:
        raise SystemExit(f"{dst.name}: ONNX output differs from torch by {err}")
    return hashlib.sha256(dst.read_bytes()).hexdigest()


def check_resize(max_size: int = 600) -> None:
    """Check that learned.nearest_exact_index matches torch's nearest-exact interpolation."""
    import torch
    import torch.nn.functional as F

    from smriflow.anat.brain_extraction.learned import nearest_exact_index

    for out in (128, 256):
        for n in range(1, max_size + 1):
            src = torch.arange(n, dtype=torch.float32)[None, None, :, None, None].expand(1, 1, n, 1, 1)
            ref = F.interpolate(src, (out, 1, 1), mode="nearest-exact")[0, 0, :, 0, 0].long().numpy()
            ours = nearest_exact_index(n, out)
            if not np.array_equal(ref, ours):
                raise SystemExit(f"nearest-exact index differs for {n} -> {out}")
            # and back (the mask is resampled from 256³ to the box's shape)
            src = torch.arange(out, dtype=torch.float32)[None, None, :, None, None]
            ref = F.interpolate(src, (n, 1, 1), mode="nearest-exact")[0, 0, :, 0, 0].long().numpy()
            if not np.array_equal(ref, nearest_exact_index(out, n)):
                raise SystemExit(f"nearest-exact index differs for {out} -> {n}")
    print(f"nearest-exact indices match torch for sizes 1..{max_size} <-> 128, 256", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for the .onnx files and LICENSE")
    parser.add_argument("--check-resize", action="store_true", help="also check the resampling indices")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    src_dir = deepbet_models_dir()
    for src_name, (dst_name, size) in MODELS.items():
        digest = export(src_dir / src_name, args.out_dir / dst_name, size)
        nbytes = (args.out_dir / dst_name).stat().st_size
        print(f'"{dst_name}": "{digest}",  # {nbytes} bytes')
    licence = next(Path(src_dir.parents[1]).glob("deepbet-*.dist-info/LICENSE"))
    shutil.copyfile(licence, args.out_dir / "LICENSE")
    if args.check_resize:
        check_resize()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
