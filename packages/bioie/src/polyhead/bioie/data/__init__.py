"""Readers, writers, the embedded generator and the model-input encoding of polyhead-bioie."""
