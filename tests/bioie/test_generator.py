"""The embedded generator: valid trees, exact spans, disjoint entities between splits, label semantics."""

from __future__ import annotations

from collections import Counter

import numpy as np

from polyhead.bioie.data.generator import RELATIONS, generate_split, split_entities
from polyhead.bioie.data.tacred import validate_example


def test_splits_share_no_entity_and_no_pair():
    pools = split_entities(0)
    for etype in ("Chemical", "Disease", "Gene"):
        names = {s: {e.name for e in pools[s][etype]} for s in pools}
        assert not names["train"] & names["test"] and not names["train"] & names["dev"]
        assert not names["dev"] & names["test"]
    _, _, train = generate_split("train", 80, seed=0)
    _, _, test = generate_split("test", 40, seed=0)
    pairs = {s: {(e.subj_id, e.obj_id) for e in ex} for s, ex in (("train", train), ("test", test))}
    assert pairs["train"] and pairs["test"] and not pairs["train"] & pairs["test"]


def test_examples_are_valid_trees_with_exact_spans():
    docs, parses, examples = generate_split("train", 60, seed=1)
    assert all(validate_example(e, RELATIONS) == [] for e in examples)
    for d in docs:
        for m in d.mentions:
            assert d.text[m.start : m.end] == m.text
        for s in parses[d.id]:
            assert [d.text[a:b] for a, b in s.offsets] == s.tokens
            assert sum(h == 0 for h in s.heads) == 1  # one root per sentence
    counts = Counter(e.relation for e in examples)
    assert set(counts) == set(RELATIONS)
    assert 0.15 < 1 - counts["no_relation"] / len(examples) < 0.5


def test_negation_and_hedging_semantics():
    _, _, examples = generate_split("train", 300, seed=2)
    by_sentence = {}
    for e in examples:
        by_sentence.setdefault(tuple(e.tokens), []).append(e)
    checked = 0
    for toks, exs in by_sentence.items():
        for e in exs:
            verb = e.heads[e.subj_end] - 1  # plain active clause: subject -> verb <- object
            if (
                e.deprels[e.subj_end] == "nsubj"
                and e.heads[e.obj_end] - 1 == verb
                and e.deprels[e.obj_end] == "dobj"
            ):
                negated = any(e.heads[i] - 1 == verb and e.deprels[i] == "neg" for i in range(len(toks)))
                assert (e.relation == "no_relation") == (negated or toks[verb] in ("accompanied", "preceded",
                                                                                    "accompany", "precede"))  # fmt: skip
                checked += 1
    assert checked > 100
    # the same sentence holds positive and negative pairs: the words alone cannot tell them apart
    mixed = sum(len({e.relation for e in exs}) > 1 for exs in by_sentence.values())
    assert mixed > 0.3 * len(by_sentence)


def test_deterministic():
    a = generate_split("test", 5, seed=7)[2]
    b = generate_split("test", 5, seed=7)[2]
    assert [e.to_json() for e in a] == [e.to_json() for e in b]
    lengths = np.array([len(e.tokens) for e in a])
    assert lengths.max() > 15
