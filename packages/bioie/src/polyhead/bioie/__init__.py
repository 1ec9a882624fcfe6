"""polyhead.bioie (work in progress)."""
