"""polyhead.train."""
