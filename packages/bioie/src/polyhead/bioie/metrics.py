"""Relation-extraction scores: TACRED-style micro P/R/F1 over the positive relations, per-class scores from a
confusion matrix, and document-level relation P/R/F1 aggregated by concept id (the BioCreative V CDR
evaluation: a document's predicted relations are the set of (type, chemical id, disease id) that any of its
mention pairs was predicted to express, compared with the document's gold relations).
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor


def scores_from_confusion(confusion: Tensor, labels: list[str], negative: int = 0) -> dict[str, float]:
    """``confusion[gold, predicted]`` -> micro P/R/F1 over positive labels and per-class P/R/F1.

    A prediction of a positive label counts as predicted positive (precision's denominator) whatever the
    gold label, and a gold positive as gold positive (recall's), as TACRED's scorer does.
    """
    c = confusion.double()
    pos = [i for i in range(len(labels)) if i != negative]
    tp = c.diagonal()[pos]
    pred = c.sum(0)[pos]
    gold = c.sum(1)[pos]

    def prf(t: Tensor, p: Tensor, g: Tensor) -> tuple[float, float, float]:
        precision = float(t / p) if p > 0 else 0.0
        recall = float(t / g) if g > 0 else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        return precision, recall, f1

    out = dict(zip(("precision", "recall", "micro_f1"), prf(tp.sum(), pred.sum(), gold.sum())))
    for k, i in enumerate(pos):
        p, r, f = prf(tp[k], pred[k], gold[k])
        out |= {f"{labels[i]}/precision": p, f"{labels[i]}/recall": r, f"{labels[i]}/f1": f}
    return out


def document_scores(
    predicted: Iterable[tuple[str, str, str, str]], gold: Iterable[tuple[str, str, str, str]]
) -> dict[str, float]:
    """Document-level P/R/F1 of ``(doc id, relation type, arg1 id, arg2 id)`` sets."""
    p, g = set(predicted), set(gold)
    tp = len(p & g)
    precision = tp / len(p) if p else 0.0
    recall = tp / len(g) if g else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"doc_precision": precision, "doc_recall": recall, "doc_f1": f1, "doc_gold": float(len(g)),
            "doc_predicted": float(len(p))}  # fmt: skip


def aggregate_by_concept(
    rows: Iterable[tuple[str | None, str | None, str | None, str, float]],
) -> dict[tuple[str, str, str, str], float]:
    """Mention-pair predictions ``(doc, subj ids, obj ids, label, score)`` -> the best score per document
    relation ``(doc, label, subj id, obj id)`` (composite ``a|b`` ids give one relation per id)."""
    best: dict[tuple[str, str, str, str], float] = {}
    for doc, s_ids, o_ids, label, score in rows:
        if doc is None or not s_ids or not o_ids:
            continue
        for s in s_ids.split("|"):
            for o in o_ids.split("|"):
                key = (doc, label, s, o)
                best[key] = max(best.get(key, 0.0), score)
    return best
