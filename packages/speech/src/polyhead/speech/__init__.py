"""polyhead-speech: attention speech-to-text with cross-attention explanations."""
