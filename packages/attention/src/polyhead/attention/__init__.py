"""polyhead.attention: the shared multi-head attention core.

>>> from polyhead.attention import create_attention
>>> attn = create_attention("mha", dim=64, num_heads=4)
>>> out = attn(torch.randn(2, 10, 64)).output  # (2, 10, 64)
"""

from polyhead.attention import functional
from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.registry import (
    create_attention,
    get_attention_class,
    list_attention,
    register_attention,
)

__all__ = [
    "AttentionBase",
    "AttentionOutput",
    "create_attention",
    "functional",
    "get_attention_class",
    "list_attention",
    "register_attention",
]
