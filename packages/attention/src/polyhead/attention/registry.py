"""Registry of attention variants (timm-style): ``@register_attention`` + ``create_attention``.

Every domain model takes its attention as a config value (``attention: {name: moh, ...}``) and builds
it with :func:`create_attention`, so any registered variant can be swapped into any domain.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar, cast

from torch import nn

_REGISTRY: dict[str, type[nn.Module]] = {}
_T = TypeVar("_T", bound=type[nn.Module])

# Variant modules register themselves on import; they are imported lazily on first lookup so that
# ``import polyhead.attention`` stays cheap and a broken optional variant cannot break the others.
_VARIANT_MODULES = (
    "mha",
    "rel_mha",
    "moh",
    "rcmha",
    "gaam",
    "multi_axis",
    "halo",
    "lsda",
    "s2",
    "dma",
    "duo",
    "single_head",
    "complex",
    "multiscale_cross",
)
_loaded = False


def register_attention(name: str) -> Callable[[_T], _T]:
    """Class decorator adding an attention module to the registry under ``name``."""

    def wrap(cls: _T) -> _T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"attention variant {name!r} is already registered by {_REGISTRY[name]!r}")
        _REGISTRY[name] = cls
        cast(
            Any, cls
        ).variant_name = name  # a class attribute AttentionBase declares; type[nn.Module] does not
        return cls

    return wrap


def _load_variants() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _VARIANT_MODULES:
        try:
            importlib.import_module(f"polyhead.attention.variants.{mod}")
        except ModuleNotFoundError as err:
            # Only tolerate variants whose file does not exist yet; real import errors must surface.
            if err.name != f"polyhead.attention.variants.{mod}":
                raise
    _loaded = True


def list_attention() -> list[str]:
    """Names of all registered attention variants, sorted."""
    _load_variants()
    return sorted(_REGISTRY)


def get_attention_class(name: str) -> type[nn.Module]:
    _load_variants()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown attention variant {name!r}; registered variants: {', '.join(sorted(_REGISTRY))}"
        ) from None


def create_attention(name: str, *, dim: int, num_heads: int, **kwargs: Any) -> nn.Module:
    """Build the attention variant ``name`` for ``dim``-wide tokens with ``num_heads`` heads.

    Extra keyword arguments are the variant's own options (window size, number of routed heads...).
    """
    return get_attention_class(name)(dim=dim, num_heads=num_heads, **kwargs)
