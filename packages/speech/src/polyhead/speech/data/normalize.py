"""Transcript normalisation, the same for training targets, references and hypotheses.

Real English transcripts (Common Voice, LibriSpeech, read speech in general) carry case, punctuation,
curly or straight apostrophes, hyphens, accented letters and now and then numbers. A recogniser outputs
none of that, so both sides of WER/CER go through one :class:`TextNormalizer`, saved with the run (in the
checkpoint and ``tokenizer.json``) so that ``test``/``predict``/``transcribe`` on any later manifest
normalise exactly as training did.

``language="en"`` (the default), in this order:

1. Unicode NFKC; curly apostrophes and primes (’ ‘ ʼ ′ `) become ``'``.
2. Numbers (``numbers="spell"``): ``$5`` -> "five dollars", ``5%`` -> "five percent", ``1,000`` -> "one
   thousand", ``3.5`` -> "three point five", ordinals ``21st`` -> "twenty first", four-digit numbers
   1100-1999 and 2010-2099 without a comma as years (``1990`` -> "nineteen ninety"), other integers as cardinals
   (``2005`` -> "two thousand five"); ``&`` -> "and". With ``numbers="keep"`` digits stay and a character
   tokenizer reports them.
3. Lower case; accents folded (``café`` -> "cafe", ``naïve`` -> "naive").
4. Hyphens, dashes, slashes and all other punctuation become spaces (``well-known`` -> "well known").
5. Apostrophes are kept between two letters (``don't``, ``o'clock``) and removed elsewhere: quote marks
   (``'yes'`` -> "yes") and the plural possessive (``dogs'`` -> "dogs", which sounds the same).
6. Runs of spaces collapse to one.

``language="basic"``: steps 1, 3 (lower case only, no accent folding), 4, 5, 6 for any script; digits stay.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any, Literal

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]  # fmt: skip
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
            "nine": "ninth", "twelve": "twelfth"}  # fmt: skip
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'", "`": "'"})
_CURRENCY = {"$": ("dollar", "dollars"), "£": ("pound", "pounds"), "€": ("euro", "euros")}

_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"  # 1,250.5: commas only between groups of three digits
_MONEY = re.compile(rf"([$£€])\s?({_NUM})")
_PERCENT = re.compile(rf"({_NUM})\s?%")
_ORDINAL_NUM = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_NUMBER = re.compile(_NUM)
_EDGE_APOSTROPHE = re.compile(r"(?<![^\W\d_])'|'(?![^\W\d_])")  # not between two letters


def cardinal(n: int) -> str:
    """``n >= 0`` in words: 1234 -> "one thousand two hundred thirty four"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + cardinal(n % 100))
    for scale, name in _SCALES:
        if n >= scale:
            rest = n % scale
            return cardinal(n // scale) + " " + name + ("" if rest == 0 else " " + cardinal(rest))
    raise AssertionError("unreachable")


def ordinal(n: int) -> str:
    """21 -> "twenty first", 40 -> "fortieth"."""
    words = cardinal(n).split()
    last = words[-1]
    if last in _ORDINAL:
        words[-1] = _ORDINAL[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year(n: int) -> str:
    """1990 -> "nineteen ninety", 1905 -> "nineteen oh five", 2019 -> "twenty nineteen"."""
    hi, lo = divmod(n, 100)
    if lo == 0:
        return cardinal(hi) + " hundred"
    return cardinal(hi) + " " + (("oh " + _ONES[lo]) if lo < 10 else cardinal(lo))


def spell_number(token: str) -> str:
    """A digit string as words: commas are thousands separators, a dot a decimal point."""
    whole, _, frac = token.replace(",", "").partition(".")
    n = int(whole)
    if "," not in token and not frac and len(whole) == 4 and (1100 <= n <= 1999 or 2010 <= n <= 2099):
        words = year(n)
    else:
        words = cardinal(n)
    if frac:
        words += " point " + " ".join(_ONES[int(d)] for d in frac)
    return words


@dataclass(frozen=True)
class TextNormalizer:
    """Transcript normalisation (see the module docstring for the exact rules).

    Args:
        language: ``en`` (English rules) or ``basic`` (any script: case, punctuation, apostrophes).
        numbers: ``spell`` (English only: numbers become words) or ``keep`` (digits stay, so a character
            tokenizer reports them).
    """

    language: Literal["en", "basic"] = "en"
    numbers: Literal["spell", "keep"] = "spell"

    def __post_init__(self) -> None:
        if self.language not in ("en", "basic"):
            raise ValueError(f"normalizer language must be 'en' or 'basic', got {self.language!r}")
        if self.numbers not in ("spell", "keep"):
            raise ValueError(f"normalizer numbers must be 'spell' or 'keep', got {self.numbers!r}")
        if self.numbers == "spell" and self.language != "en":
            raise ValueError("numbers='spell' needs language='en' (number words are English)")

    @property
    def alphabet(self) -> list[str]:
        """Characters every output of this normaliser may use besides the space (empty: any letter)."""
        return [*"abcdefghijklmnopqrstuvwxyz", "'"] if self.language == "en" else []

    def __call__(self, text: str) -> str:
        s = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
        if self.language == "en" and self.numbers == "spell":
            s = s.replace("&", " and ")
            s = _MONEY.sub(lambda m: f" {spell_number(m[2])} {_money_unit(m[1], m[2])} ", s)
            s = _PERCENT.sub(lambda m: f" {spell_number(m[1])} percent ", s)
            s = _ORDINAL_NUM.sub(lambda m: f" {ordinal(int(m[1]))} ", s)
            s = _NUMBER.sub(lambda m: f" {spell_number(m[0])} ", s)
        s = s.lower()
        if self.language == "en":  # fold accents: NFKD splits letters from their combining marks
            s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
        # everything but letters, digits, marks, apostrophes and spaces separates words
        s = "".join(c if c.isalnum() or c == "'" or unicodedata.category(c)[0] == "M" else " " for c in s)
        s = _EDGE_APOSTROPHE.sub(" ", s)
        return " ".join(s.split())

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TextNormalizer:
        return cls(**(d or {}))


def _money_unit(symbol: str, amount: str) -> str:
    one, many = _CURRENCY[symbol]
    return one if amount.replace(",", "") in ("1", "1.0", "1.00") else many
