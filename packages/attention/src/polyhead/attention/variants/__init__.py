"""Attention variants, one file per paper. Each registers itself with ``@register_attention``."""
