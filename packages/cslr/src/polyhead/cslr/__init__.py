"""polyhead.cslr."""
