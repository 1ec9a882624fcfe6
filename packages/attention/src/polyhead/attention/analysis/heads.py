"""Head masking/ablation, head importance and pruning sweeps.

Head importance follows Michel et al., "Are Sixteen Heads Really Better than One?" (NeurIPS 2019,
arXiv:1905.10650): every head's output is multiplied by a gate xi_h = 1 before the output projection, and
I_h = E_x |dL/d xi_h| over a dataset. Ablation sets xi_h = 0 (the head's output is zeroed before the
output projection).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from polyhead.attention.analysis.capture import attention_modules
from polyhead.attention.base import AttentionBase

HeadSpec = Mapping[str, Iterable[int]]


def _gate_for(module: AttentionBase, heads: Iterable[int]) -> Tensor:
    gate = torch.ones(module.num_heads)
    idx = list(heads)
    bad = [h for h in idx if not 0 <= h < module.num_heads]
    if bad:
        raise ValueError(f"head indices {bad} out of range for {module.num_heads} heads")
    gate[idx] = 0.0
    return gate


def mask_heads(model: nn.Module, heads: HeadSpec) -> None:
    """Permanently zero the given heads: ``{module_name: [head, ...]}`` (undo with :func:`unmask_heads`)."""
    modules = attention_modules(model, heads.keys())
    for name, m in modules.items():
        m.head_gate = _gate_for(m, heads[name])


def unmask_heads(model: nn.Module) -> None:
    """Remove every head gate of ``model`` (all heads on)."""
    for m in attention_modules(model).values():
        m.head_gate = None


@contextmanager
def ablate_heads(model: nn.Module, heads: HeadSpec) -> Iterator[None]:
    """Zero the given heads inside the ``with`` block; previous gates are restored afterwards."""
    modules = attention_modules(model, heads.keys())
    previous = {n: m.head_gate for n, m in modules.items()}
    try:
        for name, m in modules.items():
            gate = _gate_for(m, heads[name])
            prev = previous[name]
            if prev is not None:
                gate = gate * prev.detach().cpu()
            m.head_gate = gate
        yield
    finally:
        for name, m in modules.items():
            m.head_gate = previous[name]


def _default_batch_size(batch: Any) -> int:
    if isinstance(batch, Tensor):
        return batch.shape[0]
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            if isinstance(item, Tensor):
                return item.shape[0]
    raise ValueError("head_importance: cannot infer the batch size; pass batch_size=lambda batch: ...")


def head_importance(
    model: nn.Module,
    batches: Iterable[Any],
    loss_fn: Callable[[nn.Module, Any], Tensor],
    *,
    names: Iterable[str] | None = None,
    normalize: bool = True,
    batch_size: Callable[[Any], int] = _default_batch_size,
) -> dict[str, Tensor]:
    """I_h = E_x |dL(x)/d xi_h| for every head of every attention module (Michel et al. 2019).

    The absolute value is taken per example, as in the paper: every example gets its own gate
    (``head_gate`` of shape ``(B, H)``), so one backward pass per batch yields per-example gradients.
    (Averaging gradients over a batch before the absolute value would tend to zero at convergence.)

    Args:
        model: the model (its parameters and their gradients are left untouched).
        batches: an iterable of batches.
        loss_fn: ``loss_fn(model, batch) -> scalar loss`` (a sum or mean of per-example losses).
        names: restrict to these attention modules.
        normalize: divide each layer's scores by their L2 norm, as Michel et al. do across layers.
        batch_size: number of examples in a batch (default: leading dim of the first tensor).

    Returns:
        ``{module_name: importance (num_heads,)}``.
    """
    modules = attention_modules(model, names)
    previous = {n: m.head_gate for n, m in modules.items()}
    param_state = [(p, p.requires_grad) for p in model.parameters()]
    device = next(model.parameters()).device
    total = {n: torch.zeros(m.num_heads, device=device, dtype=torch.float64) for n, m in modules.items()}
    count = 0
    try:
        for p, _ in param_state:
            p.requires_grad_(False)
        for batch in batches:
            b = batch_size(batch)
            gates = {
                n: torch.ones(b, m.num_heads, device=device, requires_grad=True) for n, m in modules.items()
            }
            for n, m in modules.items():
                m.head_gate = gates[n]
            loss = loss_fn(model, batch)
            grads = torch.autograd.grad(loss, list(gates.values()))
            for n, g in zip(gates, grads):
                total[n] += g.abs().sum(0).double()
            count += b
    finally:
        for p, rg in param_state:
            p.requires_grad_(rg)
        for n, m in modules.items():
            m.head_gate = previous[n]
    if count == 0:
        raise ValueError("head_importance: `batches` was empty")
    scores = {n: (t / count).float().cpu() for n, t in total.items()}
    if normalize:
        scores = {n: s / s.norm().clamp_min(1e-12) for n, s in scores.items()}
    return scores


def pruning_sweep(
    model: nn.Module,
    importance: Mapping[str, Tensor],
    evaluate: Callable[[nn.Module], float],
    *,
    fractions: Iterable[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    seed: int = 0,
) -> list[dict[str, float]]:
    """Metric vs fraction of heads removed, least important first vs in a random order.

    Returns rows ``{"fraction", "heads_removed", "by_importance", "random"}``.
    """
    order = sorted(((float(s), n, h) for n, scores in importance.items() for h, s in enumerate(scores)))
    ranked = [(n, h) for _, n, h in order]
    g = torch.Generator().manual_seed(seed)
    shuffled = [ranked[i] for i in torch.randperm(len(ranked), generator=g).tolist()]

    def spec(pairs: list[tuple[str, int]]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for n, h in pairs:
            out.setdefault(n, []).append(h)
        return out

    rows = []
    for frac in fractions:
        k = round(frac * len(ranked))
        with ablate_heads(model, spec(ranked[:k])):
            by_imp = evaluate(model)
        with ablate_heads(model, spec(shuffled[:k])):
            rand = evaluate(model)
        rows.append({"fraction": float(frac), "heads_removed": k, "by_importance": by_imp, "random": rand})
    return rows
