"""Text for the synthetic corpora: sentences from a word-bigram model of English prose, and digit strings.

The prose is the documentation shipped with every Python (``pydoc_data.topics``: about 2,000 distinct
words that occur at least twice). A seeded walk over its word bigrams, started at sentence-initial words,
gives new sentences of 4-14 words that read locally like English; the vocabulary is the words of the model.
:class:`DigitText` gives digit strings spoken as words ("three one four"), the small-vocabulary task (as
TIDIGITS) that a small model learns in the quick budget on a CPU.
Both give text that :class:`polyhead.speech.data.normalize.TextNormalizer` leaves unchanged.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict

import numpy as np

_WORD = re.compile(r"(?<![\w.])[A-Za-z]{2,14}(?![\w.(])")


class BigramText:
    """Seeded sentence generator over the word bigrams of the Python documentation."""

    def __init__(self, min_count: int = 2) -> None:
        from pydoc_data.topics import topics

        sentences = []
        for s in re.split(r"(?<=[.!?])\s+|\n\s*\n", " ".join(topics.values())):
            words = [w.lower() for w in _WORD.findall(s)]
            if len(words) >= 3:
                sentences.append(words)
        counts = Counter(w for s in sentences for w in s)
        self.vocab = sorted(w for w, c in counts.items() if c >= min_count)
        keep = set(self.vocab)
        succ: dict[str, Counter] = defaultdict(Counter)
        starts: Counter = Counter()
        for s in sentences:
            s = [w for w in s if w in keep]
            if len(s) < 2:
                continue
            starts[s[0]] += 1
            for a, b in itertools.pairwise(s):
                succ[a][b] += 1
        self._starts = (list(starts), np.array(list(starts.values()), dtype=np.float64))
        self._succ = {a: (list(c), np.array(list(c.values()), dtype=np.float64)) for a, c in succ.items()}

    def sentence(self, rng: np.random.Generator, min_words: int = 4, max_words: int = 14) -> str:
        target = int(rng.integers(min_words, max_words + 1))
        words, p = self._starts
        w = words[rng.choice(len(words), p=p / p.sum())]
        out = [w]
        while len(out) < target:
            nxt = self._succ.get(w)
            if nxt is None:  # dead end: restart from a sentence-initial word
                nxt = self._starts
            words, p = nxt
            w = words[rng.choice(len(words), p=p / p.sum())]
            out.append(w)
        return " ".join(out)


DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class DigitText:
    """Seeded digit strings spoken as words: ``"three one four one"`` (``min_digits``-``max_digits`` long).

    Ten words and 15 letters: the acoustic task of a connected-digit corpus, which a model of about a million
    parameters learns from a few hundred utterances within the quick budget on a CPU, while the
    open-vocabulary sentences of :class:`BigramText` need far more steps and data (measured learning curves
    and times: packages/speech/README.md).
    """

    vocab = DIGITS

    def __init__(self, *, min_digits: int = 3, max_digits: int = 7) -> None:
        if not 1 <= min_digits <= max_digits:
            raise ValueError(f"need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
        self.min_digits, self.max_digits = min_digits, max_digits

    def sentence(self, rng: np.random.Generator) -> str:
        n = int(rng.integers(self.min_digits, self.max_digits + 1))
        return " ".join(DIGITS[d] for d in rng.integers(0, 10, n))
