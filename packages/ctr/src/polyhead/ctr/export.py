"""``polyhead-ctr export``: a trained CTR model as ONNX, with its feature encoder as a separate artefact.

    polyhead-ctr export runs/ctr/autoint/version_0/checkpoints/best-2-471.ckpt out/ [--check 1000]

writes ``out/model.onnx`` (inputs ``idx`` (N, F) int64 field-local indices and ``val`` (N, F) float32
values, output ``probability`` (N,); the batch dimension is dynamic), ``out/encoder.json`` (the fitted
feature encoder that turns raw fields into ``idx``/``val``) and ``out/data_spec.json`` (the file format it
reads). The checkpoint is read with ``weights_only=True``. Attention is exported through the ``math``
backend (plain matmul + softmax, which every ONNX runtime has); the fused CPU kernels are PyTorch-only.
``--check N`` compares onnxruntime's probabilities with PyTorch's on N random encoded rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from polyhead.ctr.data.tensors import data_from_checkpoint
from polyhead.ctr.module import CTRModule


class ProbabilityHead(nn.Module):
    """The network with a sigmoid: ``(idx, val) -> probability`` (the aux loss of MoH-style attention dropped)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, idx: Tensor, val: Tensor) -> Tensor:
        return torch.sigmoid(self.net(idx, val)[0].float())


def load_model(ckpt_path: str | Path) -> tuple[CTRModule, dict]:
    """The checkpoint's model (weights_only load) and the raw checkpoint dict."""
    from polyhead.train.rundir import read_checkpoint

    ckpt = read_checkpoint(Path(ckpt_path))
    hparams = dict(ckpt.get("hyper_parameters") or {})
    module = CTRModule(**{k: v for k, v in hparams.items() if not k.startswith("_")})
    module.on_load_checkpoint(ckpt)
    module.load_state_dict(ckpt["state_dict"])
    return module.eval(), ckpt


def export_onnx(module: CTRModule, out_dir: Path, *, checkpoint: dict | None = None) -> Path:
    """Write ``model.onnx`` (+ ``encoder.json``/``data_spec.json`` when ``checkpoint`` carries them)."""
    if module.net is None or module.cardinalities is None:
        raise ValueError("export needs a built model (a checkpoint written by polyhead-ctr fit)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for m in module.net.modules():  # ONNX has no fused CPU kernel: the reference math path
        if hasattr(m, "backend"):
            setattr(m, "backend", "math")  # noqa: B010 (an attribute of some modules only)
    head = ProbabilityHead(module.net).eval()
    n_fields = len(module.cardinalities)
    idx = torch.zeros(4, n_fields, dtype=torch.long)
    val = torch.ones(4, n_fields)
    path = out_dir / "model.onnx"
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(
        head,
        (idx, val),
        str(path),
        input_names=["idx", "val"],
        output_names=["probability"],
        dynamic_shapes={"idx": {0: batch}, "val": {0: batch}},
        dynamo=True,
        external_data=False,
    )
    if checkpoint is not None and data_from_checkpoint(checkpoint) is not None:
        (out_dir / "encoder.json").write_text(json.dumps(checkpoint["ctr_encoder"]))
        (out_dir / "data_spec.json").write_text(json.dumps(checkpoint["ctr_data_spec"], indent=1))
    return path


def check_parity(module: CTRModule, onnx_path: Path, *, rows: int = 1000, seed: int = 0) -> float:
    """Largest |onnxruntime - PyTorch| probability on ``rows`` random encoded rows."""
    import onnxruntime as ort

    g = torch.Generator().manual_seed(seed)
    assert module.cardinalities is not None and module.net is not None
    idx = torch.stack([torch.randint(0, c, (rows,), generator=g) for c in module.cardinalities], 1)
    val = torch.rand(rows, len(module.cardinalities), generator=g) * 2
    with torch.no_grad():
        want = ProbabilityHead(module.net).eval()(idx, val).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(["probability"], {"idx": idx.numpy(), "val": val.numpy()})[0]
    return float(abs(got - want).max())


def export_command(argv: list[str]) -> int:
    """Export a checkpoint as ONNX with its feature encoder (model.onnx, encoder.json, data_spec.json)."""
    ap = argparse.ArgumentParser(prog="polyhead-ctr export", description=__doc__.split("\n")[0])
    ap.add_argument("ckpt_path")
    ap.add_argument("out_dir")
    ap.add_argument("--check", type=int, default=1000, help="rows for the onnxruntime parity check (0: skip)")
    ns = ap.parse_args(argv)
    if not Path(ns.ckpt_path).is_file():
        ap.error(f"no such checkpoint: {ns.ckpt_path}")
    module, ckpt = load_model(ns.ckpt_path)
    path = export_onnx(module, Path(ns.out_dir), checkpoint=ckpt)
    print(
        f"wrote {path}"
        + (" with encoder.json and data_spec.json" if (path.parent / "encoder.json").is_file() else "")
    )
    if ns.check:
        err = check_parity(module, path, rows=ns.check)
        print(f"onnxruntime vs PyTorch on {ns.check} random rows: max |dp| = {err:.2e}")
    return 0
