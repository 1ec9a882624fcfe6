"""Data for polyhead-speech: manifests, audio I/O, features, tokenizers, batching, the synthetic corpus."""
