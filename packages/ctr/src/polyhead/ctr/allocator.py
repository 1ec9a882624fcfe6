"""jemalloc settings for polars, applied by ``polyhead-ctr`` before polars is imported.

polars allocates through its own jemalloc, which by default keeps freed pages for about 10 s before
returning them, in one arena per thread group. Preprocessing in blocks frees and reallocates each block's
columns, so with the defaults the retained pages add up to the resident size of several blocks. Returning
them at once (decay 0) keeps the peak at what is live, at the price of re-faulting them for every block
(more system time); a short decay (one arena, 100 ms) lands between the two but its peak varies from run to
run with the timing (README, preprocessing figures).
jemalloc reads the setting once, when polars' library loads, so it only takes effect in a process that has
not imported polars yet; a value the user has set is kept.
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
