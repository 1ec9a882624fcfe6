"""ONNX export: onnxruntime's probabilities match PyTorch's; the encoder and data spec are separate files."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from polyhead.ctr.data.encoder import EncodedField, FeatureEncoder
from polyhead.ctr.data.formats import criteo_spec
from polyhead.ctr.export import check_parity, export_onnx
from polyhead.ctr.module import CTRModule

pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_onnx_export_matches_pytorch_and_writes_the_encoder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = CTRModule(model="autoint+", num_layers=1, attn_size=8, dnn_hidden=[16])
    cards = [5, 9, 3, 12]
    module.build(cards)
    for p in module.parameters():  # away from the init, so a wrong op would show
        p.data.add_(torch.randn_like(p) * 0.1)
    module.eval()
    enc = FeatureEncoder(
        [
            EncodedField(f"C{i}", "categorical", "bucket", 1, [f"v{j}" for j in range(c - 2)])
            for i, c in enumerate(cards)
        ]
    )
    ckpt = {"ctr_encoder": enc.to_dict(), "ctr_data_spec": asdict(criteo_spec())}
    path = export_onnx(module, tmp_path / "out", checkpoint=ckpt)
    # 300 rows through a graph traced with 4: the batch dimension is dynamic.
    assert check_parity(module, path, rows=300, seed=1) < 1e-5
    assert (
        FeatureEncoder.from_dict(json.loads((tmp_path / "out" / "encoder.json").read_text())).cardinalities
        == cards
    )
    assert json.loads((tmp_path / "out" / "data_spec.json").read_text())["format"] == "criteo"
    # The exported model has no fused-kernel op: plain ONNX operators only.
    import onnx

    ops = {n.domain for n in onnx.load(str(path)).graph.node}
    assert ops <= {"", "ai.onnx"}
