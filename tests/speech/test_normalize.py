"""Transcript normalisation: real English transcripts (apostrophes, hyphens, numbers, case, punctuation,
accents) map to what the recogniser can output, the same way for training targets and references."""

from __future__ import annotations

import numpy as np
import pytest

from polyhead.speech.data.normalize import TextNormalizer, cardinal, ordinal, spell_number
from polyhead.speech.data.tokenizer import CharTokenizer, Tokenizer

EN = TextNormalizer()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Don’t stop—it's the dogs' bone.", "don't stop it's the dogs bone"),
        ("'Yes,' she said; \"no!\"", "yes she said no"),
        ("A well-known, up-to-date O'Brien", "a well known up to date o'brien"),
        ("The CAFÉ in Zoë's naïve façade", "the cafe in zoe's naive facade"),
        ("In 1990, 21st place & 3.5% off $1,250", "in nineteen ninety twenty first place and three point five"
         " percent off one thousand two hundred fifty dollars"),
        ("It cost $1 in 2005 or 1905", "it cost one dollar in two thousand five or nineteen oh five"),
        ("  multiple   spaces\tand\nlines ", "multiple spaces and lines"),
        ("rock 'n' roll", "rock n roll"),
    ],
)  # fmt: skip
def test_english_transcripts(raw: str, expected: str) -> None:
    assert EN(raw) == expected
    assert EN(expected) == expected  # idempotent: a normalised text is a fixed point


def test_numbers_against_a_reference_speller() -> None:
    # a second, independent speller for 0..999,999 (digit groups), compared on random numbers
    ones = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ]
    tens = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

    def below_1000(n: int) -> list[str]:
        out = []
        if n >= 100:
            out += [ones[n // 100], "hundred"]
            n %= 100
        if n >= 20:
            out.append(tens[n // 10])
            n %= 10
            if n:
                out.append(ones[n])
        elif n or not out:
            out.append(ones[n])
        return out

    def reference(n: int) -> str:
        hi, lo = divmod(n, 1000)
        words = (below_1000(hi) + ["thousand"] if hi else []) + (below_1000(lo) if lo or not hi else [])
        return " ".join(words)

    for n in np.random.default_rng(0).integers(0, 1_000_000, 300).tolist() + [
        0,
        10,
        100,
        1000,
        1010,
        999_999,
    ]:
        assert cardinal(n) == reference(n), n
    assert [ordinal(n) for n in (1, 2, 3, 5, 12, 20, 40, 101)] == [
        "first", "second", "third", "fifth", "twelfth", "twentieth", "fortieth", "one hundred first"]  # fmt: skip
    assert spell_number("1,000,000") == "one million" and spell_number("2019") == "twenty nineteen"
    assert spell_number("0.25") == "zero point two five"


def test_keep_and_basic_modes() -> None:
    assert TextNormalizer("en", "keep")("Room 101, please") == "room 101 please"
    basic = TextNormalizer("basic", "keep")
    assert basic("Привет, Мир! Don’t «stop»") == "привет мир don't stop"
    assert basic("Café") == "café"  # no accent folding outside English
    with pytest.raises(ValueError, match="numbers='spell' needs language='en'"):
        TextNormalizer("basic", "spell")
    with pytest.raises(ValueError, match="language must be"):
        TextNormalizer("fr")  # type: ignore[arg-type]


def test_normaliser_travels_with_the_tokenizer() -> None:
    tok = CharTokenizer.train(["hello world"], TextNormalizer("en", "keep"))
    again = Tokenizer.from_dict(tok.to_dict())
    assert again.normalizer == TextNormalizer("en", "keep")
    assert again.check("room 7") == tok.check("room 7") == "characters outside the tokenizer: ['7']"
    assert again.decode(again.encode("Hello, World!")) == "hello world"
    legacy = {"kind": "char", "pieces": tok.pieces}  # checkpoints before the normaliser was stored
    assert Tokenizer.from_dict(legacy).normalizer == TextNormalizer()
