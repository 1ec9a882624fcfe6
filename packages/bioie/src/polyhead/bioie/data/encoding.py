"""Examples -> model inputs: vocabularies saved with the run, per-example arrays, padded batches.

Following TACRED/AGGCN practice the subject and object tokens are replaced by ``SUBJ-<type>`` /
``OBJ-<type>`` so a model learns the relation, not the names (the embedded data's entities differ between
splits anyway). Entity-relative positions are clipped to ``±max_position``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from polyhead.bioie.data.graphs import batch_edge_index, dense_adjacency, pruned_edges, tree_edges
from polyhead.bioie.data.tacred import NO_RELATION, RelationExample

PAD, UNK = "<pad>", "<unk>"


@dataclass
class Vocab:
    """String <-> id tables; ``itos[0]`` is padding, ``itos[1]`` unknown."""

    itos: list[str]

    def __post_init__(self) -> None:
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def build(cls, items: Iterable[str], *, min_count: int = 1) -> Vocab:
        counts = Counter(items)
        return cls(
            [PAD, UNK, *sorted(s for s, c in counts.items() if c >= min_count and s not in (PAD, UNK))]
        )

    def ids(self, items: Sequence[str]) -> np.ndarray:
        return np.array([self.stoi.get(s, 1) for s in items], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.itos)


@dataclass
class Encoder:
    """Everything that turns examples into ids; saved in the checkpoint (``state()``/``from_state``)."""

    words: Vocab
    pos: Vocab
    ner: Vocab
    relations: list[str]
    max_position: int = 64
    prune_k: int = 1
    cross_sentence_window: int = 0  # the candidates it was trained on; predict builds the same by default

    @classmethod
    def build(cls, train: Sequence[RelationExample], *, relations: Sequence[str] | None = None,
              min_count: int = 2, prune_k: int = 1, cross_sentence_window: int = 0) -> Encoder:  # fmt: skip
        rels = (
            list(relations)
            if relations
            else [NO_RELATION, *sorted({e.relation for e in train} - {NO_RELATION})]
        )
        return cls(
            words=Vocab.build((w for e in train for w in masked_tokens(e)), min_count=min_count),
            pos=Vocab.build(p for e in train for p in e.pos),
            ner=Vocab.build(t for e in train for t in e.ner),
            relations=rels,
            prune_k=prune_k,
            cross_sentence_window=cross_sentence_window,
        )

    def state(self) -> dict:
        return {"words": self.words.itos, "pos": self.pos.itos, "ner": self.ner.itos, "relations": self.relations,
                "max_position": self.max_position, "prune_k": self.prune_k,
                "cross_sentence_window": self.cross_sentence_window}  # fmt: skip

    @classmethod
    def from_state(cls, s: dict) -> Encoder:
        return cls(Vocab(list(s["words"])), Vocab(list(s["pos"])), Vocab(list(s["ner"])), list(s["relations"]),
                   int(s["max_position"]), int(s["prune_k"]), int(s.get("cross_sentence_window", 0)))  # fmt: skip

    def encode(self, e: RelationExample) -> dict[str, np.ndarray | int]:
        n = len(e.tokens)
        idx = np.arange(n)
        heads = np.asarray(e.heads, dtype=np.int64)
        subj, obj = (e.subj_start, e.subj_end), (e.obj_start, e.obj_end)

        def rel_pos(a: int, b: int) -> np.ndarray:
            d = np.where(idx < a, idx - a, np.where(idx > b, idx - b, 0))
            return np.clip(d, -self.max_position, self.max_position) + self.max_position

        label = self.relations.index(e.relation) if e.relation in self.relations else -1
        return {
            "words": self.words.ids(masked_tokens(e)),
            "pos": self.pos.ids(e.pos),
            "ner": self.ner.ids(e.ner),
            "subj_pos": rel_pos(*subj),
            "obj_pos": rel_pos(*obj),
            "subj": np.array(subj),
            "obj": np.array(obj),
            "tree": tree_edges(heads),
            "pruned": pruned_edges(heads, subj, obj, self.prune_k),
            "label": label,
        }


def masked_tokens(e: RelationExample) -> list[str]:
    toks = list(e.tokens)
    toks[e.subj_start : e.subj_end + 1] = [f"SUBJ-{e.subj_type}"] * (e.subj_end - e.subj_start + 1)
    toks[e.obj_start : e.obj_end + 1] = [f"OBJ-{e.obj_type}"] * (e.obj_end - e.obj_start + 1)
    return toks


def collate(items: list[dict], *, graph: str = "dense") -> dict[str, Tensor]:
    """Pad a list of encoded examples; ``graph`` = ``dense`` (adjacency tensors), ``pyg`` (edge_index
    tensors) or ``both``."""
    lengths = [len(it["words"]) for it in items]
    b, L = len(items), max(lengths)
    out: dict[str, Tensor] = {}
    for key in ("words", "pos", "ner", "subj_pos", "obj_pos"):
        arr = np.zeros((b, L), dtype=np.int64)
        for i, it in enumerate(items):
            arr[i, : lengths[i]] = it[key]
        out[key] = torch.from_numpy(arr)
    lens = torch.tensor(lengths)
    pos = torch.arange(L)
    out["lengths"] = lens
    out["mask"] = pos[None, :] < lens[:, None]
    subj = torch.tensor(np.stack([it["subj"] for it in items]))
    obj = torch.tensor(np.stack([it["obj"] for it in items]))
    out["subj_mask"] = (pos[None] >= subj[:, :1]) & (pos[None] <= subj[:, 1:])
    out["obj_mask"] = (pos[None] >= obj[:, :1]) & (pos[None] <= obj[:, 1:])
    out["labels"] = torch.tensor([it["label"] for it in items])
    if graph in ("dense", "both"):
        out["tree_adj"] = dense_adjacency([it["tree"] for it in items], lengths, L)
        out["pruned_adj"] = dense_adjacency([it["pruned"] for it in items], lengths, L)
    if graph in ("pyg", "both"):
        out["tree_edge_index"] = batch_edge_index([it["tree"] for it in items], L)
        out["pruned_edge_index"] = batch_edge_index([it["pruned"] for it in items], L)
    return out
