"""The embedded generator: valid trees, exact spans, disjoint entities between splits, label semantics."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from polyhead.bioie.data.encoding import Vocab, masked_tokens
from polyhead.bioie.data.generator import RELATIONS, generate_split, split_entities
from polyhead.bioie.data.tacred import validate_example
from polyhead.bioie.metrics import scores_from_confusion


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


def test_bag_of_words_does_not_solve_it():
    """A linear model on the sentence's word counts (subject/object marked by type) fits the training pairs
    but stays far from solving the test split: sentences carry pairs with different labels."""
    torch.manual_seed(0)
    _, _, train = generate_split("train", 150, seed=0)
    _, _, test = generate_split("test", 100, seed=0)
    vocab = Vocab.build(w for e in train for w in masked_tokens(e))

    def counts(examples):
        x = torch.zeros(len(examples), len(vocab))
        for i, e in enumerate(examples):
            x[i].index_add_(0, torch.from_numpy(vocab.ids(masked_tokens(e))), torch.ones(len(e.tokens)))
        return x, torch.tensor([RELATIONS.index(e.relation) for e in examples])

    (xtr, ytr), (xte, yte) = counts(train), counts(test)
    linear = torch.nn.Linear(len(vocab), len(RELATIONS))
    opt = torch.optim.Adam(linear.parameters(), lr=0.05)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(linear(xtr), ytr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    n = len(RELATIONS)
    with torch.no_grad():
        train_acc = (linear(xtr).argmax(-1) == ytr).float().mean().item()
        pred = linear(xte).argmax(-1)
    f1 = scores_from_confusion(torch.bincount(yte * n + pred, minlength=n * n).view(n, n), list(RELATIONS))[
        "micro_f1"
    ]
    assert train_acc > 0.85  # the features are rich enough to fit
    assert f1 < 0.45, f1  # measured 0.31 (generator version 2, seed 0; 0.33 with version 1)
