"""The error every bad speech input raises: it names the file (and manifest line) and carries a short
reason, the key under which ``skip_bad`` counts it (``metrics.json``'s ``<split>/skipped/<reason>``)."""

from __future__ import annotations


class SpeechDataError(ValueError):
    """Bad input: ``str(err)`` names the file/line and the problem; ``reason`` is the counting key."""

    def __init__(self, message: str, *, reason: str = "bad input") -> None:
        super().__init__(message)
        self.reason = reason
