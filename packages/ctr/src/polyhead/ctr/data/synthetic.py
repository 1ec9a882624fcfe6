"""Generated Criteo-format click logs with planted feature interactions (the embedded default data).

13 integer fields (heavy-tailed counts, some negative, ~10-40% missing) and 26 categorical fields with
Zipf-distributed values and cardinalities spread log-uniformly from tens to 10^5, written as Criteo TSV
(label, I1..I13, C1..C26; empty fields for missing values; categories as 8-hex-digit hashes).

The click logit is a sum of small main effects, planted **second-order** interactions (latent-factor
products of the values of two fields, rank 4) and one **third-order** interaction, plus logistic noise,
so a model has to learn feature interactions to do well. ``PLANTED_PAIRS`` lists the interacting field
pairs (the triple contributes its three pairs too), for checking the attention explanations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

NUM_INT, NUM_CAT = 13, 26
PLANTED_PAIRS: list[tuple[str, str]] = [("C1", "C2"), ("C3", "C8"), ("C5", "I4"), ("C10", "C14")]
PLANTED_TRIPLE: tuple[str, str, str] = ("C6", "C7", "C9")


def cardinalities(rng: np.random.Generator) -> np.ndarray:
    """Per categorical field, log-uniform between 20 and 100000 (the planted fields get mid-sized ones)."""
    return np.exp(rng.uniform(np.log(20), np.log(100_000), NUM_CAT)).astype(np.int64)


def _zipf(rng: np.random.Generator, n: int, card: int, a: float = 1.2) -> np.ndarray:
    # Inverse-CDF sampling of a truncated Zipf law over 0..card-1.
    w = 1.0 / np.arange(1, card + 1) ** a
    cdf = np.cumsum(w / w.sum())
    return np.searchsorted(cdf, rng.random(n), side="right").clip(0, card - 1)


def _latent_effect(
    rng: np.random.Generator, values: list[np.ndarray], cards: list[int], *, rank: int = 4, scale: float = 1.0
) -> np.ndarray:
    """A pure interaction of several fields: ``scale * sum_r prod_f U_f[value_f, r] / sqrt(rank)``.

    Latent-factor interactions (every value has a small random factor vector, the effect is their
    multilinear product) are the usual generative model of user/item/context affinity in CTR data.
    """
    total = np.ones((len(values[0]), rank))
    for v, c in zip(values, cards):
        total = total * rng.normal(0.0, 1.0, (c, rank))[v]
    return scale * total.sum(1) / np.sqrt(rank)


def generate_criteo(path: str | Path, rows: int, *, seed: int = 0, chunk_rows: int = 500_000) -> Path:
    """Write ``rows`` Criteo-format lines to ``path`` (chunked: any size from 10^4 to 10^7 fits in memory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    structure = np.random.default_rng(seed)  # the "world": cardinalities and effect tables
    cards = cardinalities(structure)
    cards[[0, 1, 2, 4, 5, 6, 7, 8, 9, 13]] = [60, 200, 500, 40, 30, 50, 800, 25, 300, 150]
    hex_vocab = [np.array([f"{h:08x}" for h in structure.integers(0, 2**32, c)]) for c in cards]
    effect_seed = int(structure.integers(0, 2**31))
    main_scale = structure.normal(0, 0.15, NUM_CAT)
    with open(path, "w") as fh:
        for start in range(0, rows, chunk_rows):
            n = min(chunk_rows, rows - start)
            rng = np.random.default_rng([seed, start])
            cats = np.stack([_zipf(rng, n, int(c)) for c in cards], 1)  # (n, 26) value ids
            ints = np.floor(rng.lognormal(1.0, 1.6, (n, NUM_INT))).astype(np.int64) - rng.integers(
                0, 2, (n, NUM_INT)
            )
            int_missing = rng.random((n, NUM_INT)) < np.linspace(0.1, 0.4, NUM_INT)
            cat_missing = rng.random((n, NUM_CAT)) < 0.03
            eff = np.random.default_rng(effect_seed)  # same tables for every chunk
            c = {f"C{i + 1}": cats[:, i] for i in range(NUM_CAT)}
            i4_bucket = np.where(int_missing[:, 3], 0, np.clip(ints[:, 3], 0, 63))
            logit = -1.2 + sum(main_scale[i] * ((cats[:, i] % 5) - 2) for i in range(NUM_CAT)) * 0.3
            for (fa, fb), sc in zip(PLANTED_PAIRS, (1.3, 1.1, 1.1, 1.1)):
                va = i4_bucket if fa == "I4" else c[fa]
                vb = i4_bucket if fb == "I4" else c[fb]
                cards_ab = [64 if f == "I4" else int(cards[int(f[1:]) - 1]) for f in (fa, fb)]
                logit = logit + _latent_effect(eff, [va, vb], cards_ab, scale=sc)
            trip = list(PLANTED_TRIPLE)
            logit = logit + _latent_effect(
                eff, [c[f] for f in trip], [int(cards[int(f[1:]) - 1]) for f in trip], scale=1.2
            )
            label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
            cols: dict[str, object] = {"label": label}
            for i in range(NUM_INT):
                cols[f"I{i + 1}"] = pl.Series(ints[:, i]).set(pl.Series(int_missing[:, i]), None)
            for i in range(NUM_CAT):
                hexes = pl.Series(hex_vocab[i][cats[:, i]])
                cols[f"C{i + 1}"] = hexes.set(pl.Series(cat_missing[:, i]), None)
            pl.DataFrame(cols).write_csv(fh, separator="\t", include_header=False, null_value="")
    return path
