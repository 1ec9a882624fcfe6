"""Micro-F1 over positive relations (TACRED's scorer) and document-level aggregation by concept id."""

from __future__ import annotations

import torch

from polyhead.bioie.metrics import aggregate_by_concept, document_scores, scores_from_confusion


def _tacred_reference(gold: list[int], pred: list[int]) -> tuple[float, float, float]:
    """The scorer of the TACRED release, label 0 = no_relation."""
    correct = sum(1 for g, p in zip(gold, pred) if g == p and g != 0)
    guessed = sum(1 for p in pred if p != 0)
    gold_pos = sum(1 for g in gold if g != 0)
    prec = correct / guessed if guessed else 0.0
    rec = correct / gold_pos if gold_pos else 0.0
    return prec, rec, (2 * prec * rec / (prec + rec) if prec + rec else 0.0)


def test_micro_f1_matches_tacred_scorer():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        gold = torch.randint(0, 4, (200,), generator=g)
        pred = torch.where(torch.rand(200, generator=g) < 0.6, gold, torch.randint(0, 4, (200,), generator=g))
        conf = torch.bincount(gold * 4 + pred, minlength=16).view(4, 4)
        s = scores_from_confusion(conf, ["no_relation", "a", "b", "c"])
        p, r, f = _tacred_reference(gold.tolist(), pred.tolist())
        assert (
            abs(s["precision"] - p) < 1e-9 and abs(s["recall"] - r) < 1e-9 and abs(s["micro_f1"] - f) < 1e-9
        )
        tp_a = int(((gold == 1) & (pred == 1)).sum())
        assert abs(s["a/precision"] - tp_a / int((pred == 1).sum())) < 1e-9


def test_document_level_aggregation():
    rows = [
        ("d1", "C1", "D1", "CID", 0.9),  # two mentions of the same pair: one relation, best score
        ("d1", "C1", "D1", "CID", 0.6),
        ("d1", "C2|C3", "D2", "CID", 0.7),  # composite id: one relation per id
        ("d2", "C1", "D1", "CID", 0.8),  # same ids in another document: another relation
    ]
    agg = aggregate_by_concept(rows)
    assert agg == {("d1", "CID", "C1", "D1"): 0.9, ("d1", "CID", "C2", "D2"): 0.7,
                   ("d1", "CID", "C3", "D2"): 0.7, ("d2", "CID", "C1", "D1"): 0.8}  # fmt: skip
    gold = {("d1", "CID", "C1", "D1"), ("d1", "CID", "C3", "D2"), ("d2", "CID", "C9", "D9")}
    s = document_scores(agg, gold)
    assert s["doc_precision"] == 2 / 4 and s["doc_recall"] == 2 / 3
    assert abs(s["doc_f1"] - 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3)) < 1e-12
