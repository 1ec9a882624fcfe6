"""Small detection backbones with a feature pyramid, trained from scratch.

- ``tiny``: a five-stage residual CNN (strides 2-32, widths 16-128) for CPU budgets and ~128 px images;
- ``resnet18`` / ``mobilenet_v3``: torchvision's architectures without downloaded weights
  (``backbone_weights`` loads a local state dict, ``torch.load(..., weights_only=True)``).

Each returns an ``nn.Module`` mapping ``(B, 3, H, W)`` to an ``OrderedDict`` of FPN maps at strides 8, 16 and
32 with an ``out_channels`` attribute, the interface torchvision's detectors expect.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool


class _Block(nn.Module):
    """Residual basic block (He et al. 2016) that may down-sample by 2."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class TinyBackbone(nn.Module):
    """Stem (stride 2) + four residual stages (strides 4, 8, 16, 32); returns the last three stages."""

    def __init__(self, widths: tuple[int, ...] = (16, 24, 48, 96, 128)) -> None:
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"widths must hold 5 values (stem + 4 stages), got {widths}")
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        self.stages = nn.ModuleList(_Block(widths[i], widths[i + 1], 2) for i in range(4))
        self.out_widths = list(widths[2:])

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 1:
                outs.append(x)
        return outs


class _TorchvisionBody(nn.Module):
    """The stride-8/16/32 maps of a torchvision classification network."""

    def __init__(self, name: Literal["resnet18", "mobilenet_v3"]) -> None:
        super().__init__()
        from torchvision import models

        if name == "resnet18":
            net = models.resnet18(weights=None)
            self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
            self.stages = nn.ModuleList([net.layer2, net.layer3, net.layer4])
            self.out_widths = [128, 256, 512]
        else:
            feats = models.mobilenet_v3_large(weights=None).features
            # stride-8 ends after block 6, stride-16 after block 12, stride-32 at the end (torchvision's split)
            self.stem = feats[:4]
            self.stages = nn.ModuleList([feats[4:7], feats[7:13], feats[13:]])
            self.out_widths = [40, 112, 960]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


class BackboneFPN(nn.Module):
    """Body + FPN -> ``OrderedDict('0', '1', '2'[, 'pool'])`` at strides 8, 16, 32 (and 64)."""

    def __init__(self, body: nn.Module, out_channels: int, *, extra_pool: bool = False) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(
            body.out_widths, out_channels, extra_blocks=LastLevelMaxPool() if extra_pool else None
        )
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


def build_backbone(
    name: Literal["tiny", "resnet18", "mobilenet_v3"],
    *,
    out_channels: int = 64,
    weights: str | None = None,
    extra_pool: bool = False,
) -> BackboneFPN:
    """A from-scratch backbone with FPN; ``weights`` is a local state-dict file for the body."""
    if name == "tiny":
        body: nn.Module = TinyBackbone()
    elif name in ("resnet18", "mobilenet_v3"):
        body = _TorchvisionBody(name)
    else:
        raise ValueError(f"backbone must be 'tiny', 'resnet18' or 'mobilenet_v3', got {name!r}")
    if weights is not None:
        load_body_weights(body, weights)
    return BackboneFPN(body, out_channels, extra_pool=extra_pool)


def load_body_weights(body: nn.Module, path: str) -> None:
    """Load a state dict (never code: ``weights_only=True``) into ``body``; names are matched by suffix so a
    full torchvision classification checkpoint (``conv1.weight``, ``layer2.0...``) fits as well."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"backbone_weights: no such file: {file}")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = body.state_dict()
    matched = {}
    by_shape_suffix = {k.split(".", 1)[-1] if k.startswith(("stem.", "stages.")) else k: k for k in own}
    for k, v in state.items():
        key = k if k in own else by_shape_suffix.get(k)
        if key is not None and own[key].shape == v.shape:
            matched[key] = v
    if not matched:
        raise ValueError(
            f"backbone_weights {file}: no tensor matches the backbone's parameters by name and shape"
        )
    body.load_state_dict(matched, strict=False)
