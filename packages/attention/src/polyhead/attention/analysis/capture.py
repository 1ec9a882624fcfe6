"""Capture attention maps by module name while a context manager is active.

    >>> with capture_attention(model) as maps:
    ...     model(x)
    >>> maps["encoder.layers.0.attn"][0].shape   # (B, heads, L, S), one entry per forward call

Only while the context is active do the attention modules take their weight-returning (``math``) path;
on exit every module is restored, also when the body raised.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from torch import Tensor, nn

from polyhead.attention.base import AttentionBase


def attention_modules(model: nn.Module, names: Iterable[str] | None = None) -> dict[str, AttentionBase]:
    """The polyhead attention modules of ``model`` by qualified name (optionally only ``names``)."""
    found = {name: m for name, m in model.named_modules() if isinstance(m, AttentionBase)}
    if names is None:
        return found
    wanted = list(names)
    missing = [n for n in wanted if n not in found]
    if missing:
        raise ValueError(f"no polyhead attention module named {missing}; available: {sorted(found)}")
    return {n: found[n] for n in wanted}


@contextmanager
def capture_attention(
    model: nn.Module, names: Iterable[str] | None = None, *, detach: bool = True
) -> Iterator[dict[str, list[Tensor]]]:
    """Collect ``{module_name: [weights (B, heads, L, S), ...]}``, one entry per forward call.

    Args:
        model: any module containing polyhead attention modules.
        names: restrict to these module names (default: all).
        detach: store detached weights (set False to backpropagate through captured maps, e.g. for
            attention-rollout style gradients).
    """
    modules = attention_modules(model, names)
    store: dict[str, list[Tensor]] = {name: [] for name in modules}
    previous = {name: m._capture_sink for name, m in modules.items()}

    def sink_for(name: str):
        def sink(module: AttentionBase, weights: Tensor | None) -> None:
            if weights is not None:
                store[name].append(weights.detach() if detach else weights)

        return sink

    try:
        for name, m in modules.items():
            m._capture_sink = sink_for(name)
        yield store
    finally:
        for name, m in modules.items():
            m._capture_sink = previous[name]
