"""polyhead.speech."""
