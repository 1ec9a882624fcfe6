"""Losses and metrics that need pretrained networks: VGG perceptual loss, LPIPS, identity distance.

None of their weights can be downloaded here, so each is built from a local file the user passes
(``--model.perceptual_weights``, ``--model.lpips_weights``, ``--model.identity_weights``); without one
the term is skipped with a single message. Files are read with ``torch.load(weights_only=True)``.

- :class:`VGGPerceptualLoss`: Johnson et al., "Perceptual Losses for Real-Time Style Transfer" (2016,
  arXiv:1603.08155): L1 between VGG16 features (relu1_2, relu2_2, relu3_3, relu4_3) of ImageNet-normalised
  images. File: a torchvision ``vgg16`` state dict (``features.*`` keys; the classifier is ignored).
- :class:`LPIPS`: Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric"
  (CVPR 2018, arXiv:1801.03924), VGG variant: unit-normalised features of five VGG16 slices, squared
  differences weighted by learned 1x1 layers, averaged over space and summed. File: the state dict of
  the ``lpips`` package's ``LPIPS(net="vgg")`` module (keys ``net.slice1.0.weight`` ...,
  ``lin0.model.1.weight`` ...).
- :class:`IdentityDistance`: ``1 - cos`` between face embeddings of a torchvision ResNet whose ``fc``
  outputs the embedding (ArcFace-style, Deng et al. 2019, arXiv:1801.07698). File: a state dict of
  ``torchvision.models.resnet18/50`` with ``fc`` of shape ``(embedding, features)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
# torchvision vgg16.features indices that end each LPIPS slice (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3).
_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))


def _load(path: Path | str, what: str) -> dict[str, Tensor]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} weights {p} do not exist")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle that is not plain tensors, or not a torch file at all
        raise ValueError(
            f"{what} weights {p}: not a plain tensor state dict ({type(err).__name__}: {err})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{what} weights {p}: expected a state dict, got {type(state).__name__}")
    return state


def _vgg_features() -> nn.Sequential:
    from torchvision.models import vgg16

    return vgg16(weights=None).features


_M = TypeVar("_M", bound=nn.Module)


def _frozen(m: _M) -> _M:
    for p in m.parameters():
        p.requires_grad_(False)
    return m.eval()


class VGGPerceptualLoss(nn.Module):
    """Mean L1 distance between VGG16 features of two images in [0, 1]."""

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        # a slice of a Sequential is a Sequential; torch annotates __getitem__ as Sequential | Module
        self.features = _frozen(cast(nn.Sequential, features[:23]))
        self.taps = (3, 8, 15, 22)

    @classmethod
    def from_file(cls, path: Path | str) -> VGGPerceptualLoss:
        state = _load(path, "perceptual (VGG16)")
        feats = _vgg_features()
        sub = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        try:
            feats.load_state_dict(sub)
        except RuntimeError as err:
            raise ValueError(
                f"perceptual (VGG16) weights {path}: not a torchvision vgg16 state dict: {err}"
            ) from None
        return cls(feats)

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        super().train(mode)
        self.features.eval()  # frozen: never in training mode
        return self

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        x = torch.cat([pred, target]).sub(_MEAN.to(pred)).div(_STD.to(pred))
        loss = pred.new_zeros(())
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                a, b = x.chunk(2)
                loss = loss + F.l1_loss(a, b)
        return loss / len(self.taps)


class LPIPS(nn.Module):
    """LPIPS (VGG) distance per image of two images in [0, 1]: ``(B,)``."""

    shift: Tensor  # registered buffers
    scale: Tensor

    def __init__(self, features: nn.Sequential, lins: list[Tensor]) -> None:
        super().__init__()
        self.slices = nn.ModuleList(_frozen(features[a:b]) for a, b in _SLICES)
        self.lin = nn.ParameterList(
            nn.Parameter(w.view(1, -1, 1, 1).clone(), requires_grad=False) for w in lins
        )
        # The lpips package's ScalingLayer: inputs in [-1, 1] shifted and scaled per channel.
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    @classmethod
    def from_file(cls, path: Path | str) -> LPIPS:
        state = _load(path, "LPIPS")
        feats = _vgg_features()
        mapped = {}
        for s in range(1, len(_SLICES) + 1):
            for k, v in state.items():
                pre = f"net.slice{s}."
                if k.startswith(pre):
                    idx, rest = k[len(pre) :].split(".", 1)
                    mapped[f"{int(idx)}.{rest}"] = v
        try:
            feats.load_state_dict(mapped)
            lins = [state[f"lin{i}.model.1.weight"] for i in range(5)]
        except (RuntimeError, KeyError) as err:
            raise ValueError(
                f"LPIPS weights {path}: not an lpips LPIPS(net='vgg') state dict: {err}"
            ) from None
        return cls(feats, lins)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        x = torch.cat([pred, target]) * 2 - 1
        x = (x - self.shift) / self.scale
        total = pred.new_zeros(pred.shape[0])
        for sl, w in zip(self.slices, self.lin, strict=True):
            x = sl(x)
            a, b = x.chunk(2)
            a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
            b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
            total = total + ((a - b) ** 2 * w).sum(1).mean((1, 2))
        return total


class IdentityDistance(nn.Module):
    """``1 - cos`` between face embeddings of a ResNet (``(B,)``), images in [0, 1] resized to 112 px."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = _frozen(net)

    @classmethod
    def from_file(cls, path: Path | str, *, arch: str = "resnet50") -> IdentityDistance:
        from torchvision import models

        if arch not in ("resnet18", "resnet34", "resnet50"):
            raise ValueError(f"identity arch must be resnet18, resnet34 or resnet50, got {arch!r}")
        state = _load(path, "identity")
        if "fc.weight" not in state:
            raise ValueError(f"identity weights {path}: no fc.weight (the embedding layer)")
        net = getattr(models, arch)(weights=None, num_classes=state["fc.weight"].shape[0])
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"identity weights {path}: not a torchvision {arch} state dict: {err}") from None
        return cls(net)

    def embed(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False) * 2 - 1
        return F.normalize(self.net(x), dim=1)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return 1 - (self.embed(pred) * self.embed(target)).sum(1)
