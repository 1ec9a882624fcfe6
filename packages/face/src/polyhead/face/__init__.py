"""polyhead.face (work in progress)."""
