"""jemalloc settings for polars, applied by ``polyhead-ctr`` before polars is imported.

polars allocates through its own jemalloc, which by default keeps freed pages for about 10 s before
returning them. Preprocessing in blocks frees and reallocates each block's columns, so with the default
the retained pages add up to the resident size of several blocks (README, preprocessing figures).
Returning them at once keeps the peak at what is live. jemalloc reads
the setting once, when polars' library loads, so it only takes effect in a process that has not imported
polars yet; a value the user has set is kept.
"""

from __future__ import annotations

import os
import sys

POLARS_MALLOC_CONF = "dirty_decay_ms:0,muzzy_decay_ms:0"


def tune_polars_allocator() -> bool:
    """Set ``_RJEM_MALLOC_CONF`` for polars' jemalloc unless set; returns whether it applies in this process."""
    if "polars" in sys.modules:
        return False
    os.environ.setdefault("_RJEM_MALLOC_CONF", POLARS_MALLOC_CONF)
    return True
