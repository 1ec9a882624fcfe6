"""The relation-extraction LightningModule (``polyhead-bioie``): AGGCN, C-GCN or a Transformer on candidates.

    polyhead-bioie fit                                   # AGGCN on the generated abstracts
    polyhead-bioie fit --model.model tree_gcn            # the pruned-tree GCN baseline
    polyhead-bioie fit --model.attention '{name: moh}'   # any polyhead.attention variant as the adjacency source
    polyhead-bioie test                                  # micro-F1, per class, confusion, document level -> metrics.json
    polyhead-bioie predict --data.predict_path docs.pubtator   # predictions.pubtator + predictions.json

The example encoder (vocabularies, labels, pruning distance) is saved in the checkpoint and used by
test/predict. Training uses AdamW (the references use SGD with a decaying rate over 100 epochs; short
budgets here need faster convergence).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torchmetrics
from torch import Tensor, nn

from polyhead.bioie.data.document import Relation
from polyhead.bioie.data.encoding import Encoder
from polyhead.bioie.data.pubtator import format_document
from polyhead.bioie.data.tacred import NO_RELATION
from polyhead.bioie.metrics import aggregate_by_concept, document_scores, scores_from_confusion
from polyhead.bioie.models import build_model
from polyhead.train import run_dir
from polyhead.train.cli import PolyheadConfigError


class RelationModule(pl.LightningModule):
    """Relation classification with micro-F1 over positive relations.

    Args:
        model: ``aggcn`` (attention-guided GCN), ``tree_gcn`` (C-GCN, pruned tree) or ``transformer``.
        hidden: width of the context layer and the graph/transformer layers.
        heads: attention heads (AGGCN: soft adjacency matrices per block; transformer: heads per layer).
        blocks: AGGCN attention-guided blocks after the tree block.
        layers: GCN layers (tree_gcn) or Transformer layers (transformer).
        attention: ``polyhead.attention`` config, e.g. ``{"name": "mha"}`` (AGGCN and transformer).
        graph: tree_gcn's graph layer: ``dense`` padded adjacency or ``pyg`` edge_index message passing.
        prune_k: path-centric pruning distance for tree_gcn (-1: whole tree); saved in the encoder.
        min_count: words seen fewer times in training become ``<unk>``.
        word_dim, tag_dim, position_dim: embedding sizes.
        dropout: input / layer dropout.
        lr, weight_decay: AdamW.
        threshold: predict: a pair gets its best positive label when that label's probability exceeds
            ``threshold`` (0 = plain argmax).
        explain: after ``test``, write per-head attention figures and tree-alignment scores (AGGCN).
        num_threads: intra-op CPU threads (``torch.set_num_threads``; None keeps torch's default). The
            matrices here are small (tens of tokens): one thread is about as fast as two on an idle machine
            and many times faster when other processes share the cores (OpenMP spin-waits).
    """

    def __init__(
        self,
        *,
        model: Literal["aggcn", "tree_gcn", "transformer"] = "aggcn",
        hidden: int = 96,
        heads: int = 3,
        blocks: int = 1,
        layers: int = 2,
        attention: dict[str, Any] | None = None,
        graph: Literal["dense", "pyg"] = "dense",
        prune_k: int = 1,
        min_count: int = 2,
        word_dim: int = 64,
        tag_dim: int = 16,
        position_dim: int = 16,
        dropout: float = 0.3,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        threshold: float = 0.0,
        explain: bool = True,
        num_threads: int | None = None,
    ) -> None:
        super().__init__()
        if model == "transformer" and hidden % heads:
            raise ValueError(
                f"model.hidden ({hidden}) must be divisible by model.heads ({heads}) for the transformer"
            )
        if model == "aggcn" and hidden % 4:
            raise ValueError(
                f"model.hidden ({hidden}) must be divisible by 4 (AGGCN's DCGCN sublayers 2 and 4)"
            )
        self.save_hyperparameters()
        self.net: nn.Module | None = None
        self.encoder: Encoder | None = None
        # ConfusionMatrix(task=...) returns the task's metric (MulticlassConfusionMatrix), typed Metric
        self.confusion: torchmetrics.Metric | None = None
        self._rows: list[tuple[int, int, float, list[float]]] = []

    # ---- building ----------------------------------------------------------------------------------------
    def build(self, encoder: Encoder) -> None:
        hp = self.hparams
        self.encoder = encoder
        sizes = {"words": len(encoder.words), "pos": len(encoder.pos), "ner": len(encoder.ner),
                 "positions": 2 * encoder.max_position + 1}  # fmt: skip
        common: dict[str, Any] = {"vocab_sizes": sizes, "num_classes": len(encoder.relations), "hidden": hp.hidden,
                                  "dropout": hp.dropout, "word_dim": hp.word_dim, "tag_dim": hp.tag_dim,
                                  "position_dim": hp.position_dim}  # fmt: skip
        if hp.model == "aggcn":
            self.net = build_model(
                "aggcn", heads=hp.heads, blocks=hp.blocks, attention=hp.attention, **common
            )
        elif hp.model == "tree_gcn":
            self.net = build_model("tree_gcn", layers=hp.layers, graph=hp.graph, **common)
        else:
            self.net = build_model(
                "transformer", heads=hp.heads, layers=hp.layers, attention=hp.attention, **common
            )
        n = len(encoder.relations)
        self.confusion = torchmetrics.ConfusionMatrix(task="multiclass", num_classes=n)
        self.val_confusion = torchmetrics.ConfusionMatrix(task="multiclass", num_classes=n)

    def setup(self, stage: str) -> None:
        if self.hparams.num_threads:
            torch.set_num_threads(self.hparams.num_threads)
        dm = self.trainer.datamodule
        dm.graph = "pyg" if (self.hparams.model == "tree_gcn" and self.hparams.graph == "pyg") else "dense"
        dm.setup(stage)
        if self.net is not None or stage == "predict":
            return  # predict: the network and its encoder come from the checkpoint (on_load_checkpoint)
        if stage == "fit" or self.trainer.ckpt_path is None:
            # A fresh run (or an untrained evaluation): the encoder comes from this run's training split.
            enc = Encoder.build(
                dm.examples["train"],
                min_count=self.hparams.min_count,
                prune_k=self.hparams.prune_k,
                cross_sentence_window=dm.window,
            )
            self.build(enc)
            if stage == "fit" and self.trainer.is_global_zero:
                d = run_dir(self.trainer)
                d.mkdir(parents=True, exist_ok=True)
                (d / "encoder.json").write_text(json.dumps(enc.state()) + "\n")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        assert self.encoder is not None, "checkpoint saved before build()"
        checkpoint["bioie_encoder"] = self.encoder.state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("bioie_encoder")
        if state is None:
            return
        if self.net is None:
            self.build(Encoder.from_state(state))
            return
        stage = str(getattr(self.trainer.state.fn, "value", self.trainer.state.fn))
        dm = self.trainer.datamodule
        window = int(state.get("cross_sentence_window", 0))
        if stage in ("validate", "test") and dm.cross_sentence_window is None and window != dm.window:
            # Lightning restores after setup: rebuild the candidates with the checkpoint's window and the
            # network from the checkpoint's encoder (before its weights are loaded into it)
            dm.cross_sentence_window = window
            dm.examples.clear()
            dm.setup(stage)
            self.build(Encoder.from_state(state))

    # ---- steps --------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        assert self.net is not None, "forward before build()"
        return self.net(batch)

    def _aux(self) -> Tensor | None:
        fn = getattr(self.net, "aux_loss", None)
        return fn() if fn is not None else None

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self(batch)
        loss = nn.functional.cross_entropy(logits, batch["labels"])
        bs = len(batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        aux = self._aux()
        if aux is not None:
            self.log("train/aux_loss", aux, batch_size=bs)
            loss = loss + aux
        return loss

    def _check_labels(self, batch: dict[str, Tensor], split: str) -> None:
        if (batch["labels"] < 0).any():
            ds = self.trainer.datamodule.examples[split]
            bad = sorted(
                {ds[i].relation for i, lab in zip(batch["index"], batch["labels"].tolist()) if lab < 0}
            )
            assert self.encoder is not None  # built with the network
            raise PolyheadConfigError(f"{split} data has relation label(s) {bad} the model was not trained on "
                                      f"(its labels: {self.encoder.relations})")  # fmt: skip

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._check_labels(batch, "dev")
        logits = self(batch)
        self.val_confusion.update(logits.argmax(-1), batch["labels"])
        self.log(
            "val/loss", nn.functional.cross_entropy(logits, batch["labels"]), batch_size=len(batch["labels"])
        )

    def on_validation_epoch_end(self) -> None:
        assert self.encoder is not None  # built with the network
        s = scores_from_confusion(self.val_confusion.compute(), self.encoder.relations)
        self.val_confusion.reset()
        self.log("val/micro_f1", s["micro_f1"], prog_bar=True)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._check_labels(batch, "test")
        probs = self(batch).softmax(-1)
        pred = probs.argmax(-1)
        assert self.confusion is not None  # built with the network
        self.confusion.update(pred, batch["labels"])
        for i, p, pr in zip(batch["index"], pred.tolist(), probs.tolist()):
            self._rows.append((i, p, pr[p], pr))

    def on_test_epoch_end(self) -> None:
        assert self.encoder is not None and self.confusion is not None  # built with the network
        labels = self.encoder.relations
        confusion = self.confusion.compute()
        self.confusion.reset()
        s = scores_from_confusion(confusion, labels)
        for k, v in s.items():
            self.log(f"test/{k}", v)
        dm = self.trainer.datamodule
        examples = dm.examples["test"]
        rows = [(examples[i].docid, examples[i].subj_id, examples[i].obj_id, labels[p], sc)
                for i, p, sc, _ in self._rows if labels[p] != NO_RELATION]  # fmt: skip
        predicted = set(aggregate_by_concept(rows))
        if dm.documents.get("test"):  # the documents' own relations (cross-sentence ones included)
            gold = {(d.id, r.type, r.arg1, r.arg2) for d in dm.documents["test"] for r in d.relations}
        else:
            gold = set(aggregate_by_concept((e.docid, e.subj_id, e.obj_id, e.relation, 1.0) for e in examples
                                            if e.relation != NO_RELATION))  # fmt: skip
        if gold:
            for k, v in document_scores(predicted, gold).items():
                self.log(f"test/{k}", v)
        for reason, count in dm.skipped().items():
            self.log(f"data/skipped_{reason}", float(count))
        self.log("data/test_candidates", float(len(examples)))
        for split, counts in dm.candidate_counts.items():  # within / across sentences, still unreachable
            for k, v in counts.items():
                self.log(f"data/{split}_{k}", float(v))
        if self.trainer.is_global_zero:
            d = run_dir(self.trainer)
            d.mkdir(parents=True, exist_ok=True)
            table = {"labels": labels, "confusion": confusion.tolist()}
            (d / "confusion.json").write_text(json.dumps(table, indent=1) + "\n")
            if self.hparams.explain and self.hparams.model == "aggcn":
                from polyhead.bioie.explain import explain_run

                explain_run(self, dm, d)
        self._rows = []

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        probs = self(batch).softmax(-1)
        for i, pr in zip(batch["index"], probs.tolist()):
            self._rows.append((i, 0, 0.0, pr))
        return probs

    def on_predict_epoch_end(self) -> None:
        assert self.encoder is not None  # restored from the checkpoint
        labels = self.encoder.relations
        dm = self.trainer.datamodule
        examples = dm.examples["predict"]
        th = self.hparams.threshold
        pairs, rows = [], []
        for i, _, _, pr in self._rows:
            e = examples[i]
            if th > 0:  # the best positive label when it is probable enough
                k = max(range(1, len(labels)), key=lambda j: pr[j])
                k = k if pr[k] > th else 0
            else:
                k = max(range(len(labels)), key=lambda j: pr[j])
            label, score = labels[k], pr[k]
            pairs.append({"id": e.id, "document": e.docid, "subject": " ".join(e.tokens[e.subj_start : e.subj_end + 1]),
                          "object": " ".join(e.tokens[e.obj_start : e.obj_end + 1]), "subject_id": e.subj_id,
                          "object_id": e.obj_id, "label": label, "score": score,
                          "probabilities": dict(zip(labels, pr))})  # fmt: skip
            if label != NO_RELATION:
                rows.append((e.docid, e.subj_id, e.obj_id, label, score))
        doc_rel = aggregate_by_concept(rows)
        by_doc: dict[str, list[tuple[Relation, float]]] = {}
        for (doc, label, s, o), score in sorted(doc_rel.items()):
            by_doc.setdefault(doc, []).append((Relation(label, s, o), score))
        out = run_dir(self.trainer)
        out.mkdir(parents=True, exist_ok=True)
        docs = dm.documents["predict"]
        with open(out / "predictions.pubtator", "w", encoding="utf-8") as f:
            f.write("\n".join(format_document(d, [r for r, _ in by_doc.get(d.id, [])]) for d in docs) + "\n")
        payload = {
            "source": str(dm.predict_path),
            "documents": [{"id": d.id, "relations": [{"type": r.type, "arg1": r.arg1, "arg2": r.arg2, "score": sc}
                                                     for r, sc in by_doc.get(d.id, [])]} for d in docs],
            "pairs": pairs,
        }  # fmt: skip
        (out / "predictions.json").write_text(json.dumps(payload, indent=1) + "\n")
        print(f"polyhead-bioie: scored {len(pairs)} mention pairs in {len(docs)} documents; "
              f"{sum(len(v) for v in by_doc.values())} relations -> {out / 'predictions.pubtator'}, "
              f"{out / 'predictions.json'}")  # fmt: skip
        self._rows = []

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
