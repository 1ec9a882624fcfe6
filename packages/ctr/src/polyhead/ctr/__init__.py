"""polyhead.ctr."""
