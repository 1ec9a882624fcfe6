"""Generated Criteo-format click logs with planted feature interactions (the embedded default data).

13 integer fields (heavy-tailed counts, some negative, ~10-40% missing) and 26 categorical fields with
Zipf-distributed values and cardinalities spread log-uniformly from tens to 10^5, written as Criteo TSV
(label, I1..I13, C1..C26; empty fields for missing values; categories as 8-hex-digit hashes).

Generative model of the click logit (version 2), a latent-factor model of click data plus logistic noise:

- first-order effects: every categorical value has its own weight ``s_f * N(0, 1)`` (per-field scale
  ``s_f ~ N(0, 0.15)``), every integer field a weight that varies smoothly with ``log(1 + x)``;
- **second-order** interactions C1xC2, C3xC8, C5xI4, C10xC14: ``scale * <u_a, u_b> / sqrt(4)`` with a
  rank-4 factor vector ``u ~ N(0, I)`` per categorical value (for I4 the factors vary smoothly with
  ``log(1 + x)``, as a count's effect does, so the standard log-bucketing of integer fields keeps it);
- one **third-order** interaction C6xC7xC9: ``1.2 * sum_r u_a,r u_b,r u_c,r / 2``.

Version 1 had near-constant first-order effects (a function of the value id mod 5) and gave I4 an
independent factor per raw value, part of which the ``floor(ln(x)^2)`` buckets of every CTR pipeline
merge away. ``PLANTED_PAIRS`` lists the interacting field pairs (the triple contributes its three pairs
too), for checking the attention explanations; ``sample_chunk`` returns the true logit and its parts,
``true_effects`` the same for every line of a file.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 2
NUM_INT, NUM_CAT = 13, 26
PLANTED_PAIRS: list[tuple[str, str]] = [("C1", "C2"), ("C3", "C8"), ("C5", "I4"), ("C10", "C14")]
PLANTED_TRIPLE: tuple[str, str, str] = ("C6", "C7", "C9")
INT_CLIP = 63  # integer values above this share the top value's effects


def cardinalities(rng: np.random.Generator) -> np.ndarray:
    """Per categorical field, log-uniform between 20 and 100000 (the planted fields get mid-sized ones)."""
    return np.exp(rng.uniform(np.log(20), np.log(100_000), NUM_CAT)).astype(np.int64)


def _zipf(rng: np.random.Generator, n: int, card: int, a: float = 1.2) -> np.ndarray:
    # Inverse-CDF sampling of a truncated Zipf law over 0..card-1.
    w = 1.0 / np.arange(1, card + 1) ** a
    cdf = np.cumsum(w / w.sum())
    return np.searchsorted(cdf, rng.random(n), side="right").clip(0, card - 1)


def _latent_effect(values: list[np.ndarray], tables: list[np.ndarray], *, scale: float = 1.0) -> np.ndarray:
    """A pure interaction of several fields: ``scale * sum_r prod_f U_f[value_f, r] / sqrt(rank)``.

    Latent-factor interactions (every value has a small random factor vector, the effect is their
    multilinear product) are the usual generative model of user/item/context affinity in CTR data.
    """
    rank = tables[0].shape[1]
    total = np.ones((len(values[0]), rank))
    for v, table in zip(values, tables):
        total = total * table[v]
    return scale * total.sum(1) / np.sqrt(rank)


def _smooth_table(rng: np.random.Generator, rank: int, knots: int = 8) -> np.ndarray:
    """Factors of an integer field, ``(INT_CLIP + 2, rank)``: row ``x`` for values ``0..INT_CLIP`` varies
    smoothly with ``log(1 + x)`` (random knot vectors, linearly interpolated); the last row is "missing"."""
    grid = np.log1p(np.arange(INT_CLIP + 1))
    kx = np.linspace(0.0, grid[-1], knots)
    ky = rng.normal(0.0, 1.0, (knots, rank))
    table = np.stack([np.interp(grid, kx, ky[:, r]) for r in range(rank)], 1)
    return np.concatenate([table, rng.normal(0.0, 1.0, (1, rank))])


@functools.lru_cache(maxsize=4)
def _world(seed: int) -> tuple[np.ndarray, list[np.ndarray], int, np.ndarray]:
    """What every chunk of one seed shares: cardinalities, the hash of every value, the seed of the
    effect tables and the per-field first-order scales."""
    structure = np.random.default_rng(seed)
    cards = cardinalities(structure)
    cards[[0, 1, 2, 4, 5, 6, 7, 8, 9, 13]] = [60, 200, 500, 40, 30, 50, 800, 25, 300, 150]
    hashes = [structure.integers(0, 2**32, c) for c in cards]
    effect_seed = int(structure.integers(0, 2**31))
    return cards, hashes, effect_seed, structure.normal(0, 0.15, NUM_CAT)


def sample_chunk(seed: int, start: int, n: int) -> dict[str, np.ndarray]:
    """Rows ``start .. start + n`` of the generated data for ``seed``, before formatting.

    Returns ``cats (n, 26)`` value ids, ``ints (n, 13)``, the missing masks ``int_missing`` /
    ``cat_missing``, the click ``logit`` with its parts (``main``, one ``pair:<a>x<b>`` per planted pair,
    ``triple``), and ``label``. ``generate_criteo`` writes exactly these rows, so the true logit gives the
    Bayes-optimal AUC of a file (``GENERATOR_VERSION`` 2).
    """
    cards, _, effect_seed, main_scale = _world(seed)
    rng = np.random.default_rng([seed, start])
    cats = np.stack([_zipf(rng, n, int(c)) for c in cards], 1)  # (n, 26) value ids
    ints = np.floor(rng.lognormal(1.0, 1.6, (n, NUM_INT))).astype(np.int64) - rng.integers(0, 2, (n, NUM_INT))
    int_missing = rng.random((n, NUM_INT)) < np.linspace(0.1, 0.4, NUM_INT)
    cat_missing = rng.random((n, NUM_CAT)) < 0.03
    eff = np.random.default_rng(effect_seed)  # same tables for every chunk
    # Effect-table rows: categorical value ids, ``card`` when missing (missing has effects of its own).
    c = {f"C{i + 1}": np.where(cat_missing[:, i], cards[i], cats[:, i]) for i in range(NUM_CAT)}
    # Integer fields as effect-table rows: 0..INT_CLIP (negatives as 0), INT_CLIP + 1 when missing.
    x = {
        f"I{j + 1}": np.where(int_missing[:, j], INT_CLIP + 1, np.clip(ints[:, j], 0, INT_CLIP))
        for j in range(NUM_INT)
    }
    tables = {f"C{i + 1}": eff.normal(0.0, 1.0, (int(cards[i]) + 1, 4)) for i in range(NUM_CAT)}
    tables["I4"] = _smooth_table(eff, 4)
    parts: dict[str, np.ndarray] = {}
    first = sum(
        main_scale[i] * eff.normal(0.0, 1.0, int(cards[i]) + 1)[c[f"C{i + 1}"]] for i in range(NUM_CAT)
    )
    int_scale = eff.normal(0.0, 0.15, NUM_INT)
    first = first + sum(int_scale[j] * _smooth_table(eff, 1)[x[f"I{j + 1}"], 0] for j in range(NUM_INT))
    parts["main"] = first
    values = {**c, **x}
    for (fa, fb), sc in zip(PLANTED_PAIRS, (1.3, 1.1, 1.1, 1.1)):
        parts[f"pair:{fa}x{fb}"] = _latent_effect(
            [values[fa], values[fb]], [tables[fa], tables[fb]], scale=sc
        )
    trip = list(PLANTED_TRIPLE)
    parts["triple"] = _latent_effect([c[f] for f in trip], [tables[f] for f in trip], scale=1.2)
    logit = -1.2 + sum(parts.values())
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    return {
        "cats": cats,
        "ints": ints,
        "int_missing": int_missing,
        "cat_missing": cat_missing,
        "logit": logit,
        "label": label,
        **{f"logit_{k}": v for k, v in parts.items()},
    }


def true_effects(rows: int, *, seed: int = 0, chunk_rows: int = 500_000) -> dict[str, np.ndarray]:
    """The click logit of every line of ``generate_criteo(path, rows, seed=seed, chunk_rows=chunk_rows)``
    and its parts (line ``i`` is element ``i - 1``): ``logit``, ``main`` (first-order), one
    ``pair:<a>x<b>`` per planted pair and ``triple``. Scoring test lines with ``logit`` gives the
    Bayes-optimal AUC; the parts show which planted effects a model has learnt (``explain.effect_recovery``)."""
    chunks = [sample_chunk(seed, s, min(chunk_rows, rows - s)) for s in range(0, rows, chunk_rows)]
    keys = ["logit", *(k.removeprefix("logit_") for k in chunks[0] if k.startswith("logit_"))]
    return {k: np.concatenate([ch["logit" if k == "logit" else f"logit_{k}"] for ch in chunks]) for k in keys}


def generate_criteo(path: str | Path, rows: int, *, seed: int = 0, chunk_rows: int = 500_000) -> Path:
    """Write ``rows`` Criteo-format lines to ``path`` (chunked: any size from 10^4 to 10^7 fits in memory)."""
    import polars as pl  # the writer only: importing the constants stays light (CLI start-up)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hex_vocab = [np.array([f"{h:08x}" for h in hashes]) for hashes in _world(seed)[1]]
    with open(path, "w") as fh:
        for start in range(0, rows, chunk_rows):
            ch = sample_chunk(seed, start, min(chunk_rows, rows - start))
            cols: dict[str, object] = {"label": ch["label"]}
            for i in range(NUM_INT):
                cols[f"I{i + 1}"] = pl.Series(ch["ints"][:, i]).set(pl.Series(ch["int_missing"][:, i]), None)
            for i in range(NUM_CAT):
                hexes = pl.Series(hex_vocab[i][ch["cats"][:, i]])
                cols[f"C{i + 1}"] = hexes.set(pl.Series(ch["cat_missing"][:, i]), None)
            pl.DataFrame(cols).write_csv(fh, separator="\t", include_header=False, null_value="")
    return path
