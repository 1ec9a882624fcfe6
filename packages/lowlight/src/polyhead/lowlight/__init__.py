"""polyhead.lowlight (work in progress)."""
