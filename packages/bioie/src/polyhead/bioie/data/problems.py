"""Input problems of the biomedical readers: one error that lists every problem, or counted skips.

Every reader of :mod:`polyhead.bioie.data` checks a whole file before failing, so a user sees all the
problems of a file at once (file, line or document id, what was expected). With ``skip_bad`` the bad
records are dropped instead and counted by reason; the counts reach ``metrics.json``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

MAX_LISTED = 20


class DataError(ValueError):
    """Malformed biomedical input; the message names the file, the line or document and the expectation."""


@dataclass
class Problems:
    """Problems found while reading one or more files.

    Attributes:
        skip_bad: drop bad records and count them instead of raising.
        messages: ``"<file>:<where>: <what>"`` lines, in the order found.
        reasons: skipped records per short reason (``bad_offsets``, ``cycle``, ...).
    """

    skip_bad: bool = False
    messages: list[str] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)

    def add(self, where: str, reason: str, message: str) -> None:
        self.messages.append(f"{where}: {message}")
        self.reasons[reason] += 1

    def raise_or_count(self, what: str) -> None:
        """Raise one :class:`DataError` listing the problems unless ``skip_bad`` (then keep the counts)."""
        if not self.messages or self.skip_bad:
            return
        # One line (the CLI prints errors as one line): the first problems, then how many more.
        shown = self.messages[:MAX_LISTED]
        more = len(self.messages) - len(shown)
        tail = f"; ... and {more} more" if more else ""
        raise DataError(
            f"{len(self.messages)} problem(s) in {what} (data.skip_bad skips and counts them): "
            + "; ".join(shown)
            + tail
        )

    def counts(self) -> dict[str, int]:
        return dict(self.reasons)
