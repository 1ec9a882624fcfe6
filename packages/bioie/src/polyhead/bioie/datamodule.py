"""Relation-extraction data for Lightning: generated abstracts by default, or real files in any supported format.

    polyhead-bioie fit                                                    # generated abstracts
    polyhead-bioie fit --data.format tacred --data.train_path train.json --data.dev_path dev.json \\
        --data.test_path test.json                                        # AGGCN/TACRED JSON
    polyhead-bioie fit --data.format pubtator --data.train_path CDR_TrainingSet.PubTator.txt ... \\
        --data.relations '[CID]' --data.pair_types '[[Chemical, Disease]]' --data.spacy_model en_core_sci_sm
    polyhead-bioie predict --data.predict_path new.pubtator               # PubTator relation lines + JSON

Document formats (PubTator, BioC XML/JSON, ChemProt) need sentence parses: a ``<file>.parses.json`` next to
the file (what ``polyhead-bioie generate`` writes) or a spaCy model (``--data.spacy_model``).
The example encoder (vocabularies, relation labels, pruning distance) is built from the training split and
saved in the checkpoint; test and predict encode with the checkpoint's encoder.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
from torch.utils.data import Dataset

from polyhead.bioie.data.bioc_io import read_bioc
from polyhead.bioie.data.candidates import (
    cross_sentence_relations,
    document_examples,
    is_cross_sentence,
    normalise_type,
)
from polyhead.bioie.data.chemprot import read_chemprot
from polyhead.bioie.data.document import Document, ParsedSentence
from polyhead.bioie.data.encoding import Encoder, collate
from polyhead.bioie.data.generator import GENERATOR_VERSION, RELATIONS, generate_split
from polyhead.bioie.data.problems import DataError, Problems
from polyhead.bioie.data.pubtator import read_parses, read_pubtator, write_parses, write_pubtator
from polyhead.bioie.data.spacy_parse import parse_documents
from polyhead.bioie.data.tacred import RelationExample, read_tacred, write_tacred
from polyhead.train import stateful_loader
from polyhead.train.cli import PolyheadConfigError

Format = Literal["generated", "tacred", "pubtator", "bioc_xml", "bioc_json", "chemprot"]
SPLITS = ("train", "dev", "test")


class EncodedDataset(Dataset):
    """Examples encoded once (ids, relative positions, tree and pruned edges)."""

    def __init__(self, examples: list[RelationExample], encoder: Encoder) -> None:
        self.examples = examples
        self.items = [encoder.encode(e) for e in examples]
        for i, it in enumerate(self.items):
            it["index"] = i

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class _Collate:
    """Picklable collate with the graph layout the model needs."""

    def __init__(self, graph: str) -> None:
        self.graph = graph

    def __call__(self, items: list[dict]) -> dict:
        batch: dict[str, Any] = collate(items, graph=self.graph)  # tensors, and the example indices
        batch["index"] = [it["index"] for it in items]
        return batch


class RelationDataModule(pl.LightningDataModule):
    """Train/dev/test relation candidates and the documents they came from.

    Args:
        format: ``generated`` (default, no files), ``tacred`` (JSON), ``pubtator``, ``bioc_xml``,
            ``bioc_json`` or ``chemprot`` (``<path>`` is the prefix of ``_abstracts.tsv``/``_entities.tsv``/
            ``_relations.tsv``).
        train_path, dev_path, test_path: the split files (all three for real data).
        relations: allowed relation labels of the files (e.g. ``[CID]``); default: the generator's, any
            label for TACRED JSON, the five evaluated CPR groups for ChemProt.
        pair_types: candidate (subject type, object type) pairs for document formats.
        spacy_model: spaCy pipeline (name or path) to parse raw text when no ``.parses.json`` is present.
        skip_bad: skip malformed records and count them (the counts reach metrics.json) instead of failing.
        train_docs, dev_docs, test_docs, seed: generated abstracts per split and the generator seed.
        cache_dir: where the generated corpus is written (TACRED JSON, PubTator, BioC XML, parses).
        batch_size: candidates per batch.
        predict_path: a document file (format from the suffix: ``.xml`` BioC XML, ``.json`` BioC JSON,
            else PubTator) whose candidate pairs ``predict`` scores.
        cross_sentence_window: also make candidates of mention pairs in sentences up to this far apart, one
            example over the merged sentences (document formats and the generated abstracts; TACRED JSON
            holds its candidates already). Default: 0 for ``fit``; ``validate``/``test``/``predict`` of a
            checkpoint use the window it was trained with (saved in its encoder).
    """

    def __init__(
        self,
        *,
        format: Format = "generated",
        train_path: str | None = None,
        dev_path: str | None = None,
        test_path: str | None = None,
        relations: list[str] | None = None,
        pair_types: list[tuple[str, str]] | None = None,
        spacy_model: str | None = None,
        skip_bad: bool = False,
        train_docs: int = 700,
        dev_docs: int = 150,
        test_docs: int = 300,
        seed: int = 0,
        cache_dir: str = "runs/bioie/cache",
        batch_size: int = 32,
        predict_path: str | None = None,
        cross_sentence_window: int | None = None,
    ) -> None:
        super().__init__()
        paths = {"train": train_path, "dev": dev_path, "test": test_path}
        if format == "generated" and any(paths.values()):
            raise ValueError("data.train_path/dev_path/test_path need data.format (tacred, pubtator, ...)")
        if format != "generated":
            given = {k: v for k, v in paths.items() if v is not None}
            missing = [f"data.{k}_path" for k in paths if k not in given]
            if missing:
                raise ValueError(f"data.format {format} needs {missing}")
            for k, v in given.items():
                probe = Path(f"{v}_abstracts.tsv") if format == "chemprot" else Path(v)
                if not probe.is_file():
                    raise FileNotFoundError(f"data.{k}_path: no such file: {probe}")
        if predict_path is not None and not Path(predict_path).is_file():
            raise FileNotFoundError(f"data.predict_path: no such file: {predict_path}")
        for k, n in (("train_docs", train_docs), ("dev_docs", dev_docs), ("test_docs", test_docs),
                     ("batch_size", batch_size)):  # fmt: skip
            if n < 1:
                raise ValueError(f"data.{k} must be >= 1, got {n}")
        if cross_sentence_window is not None and cross_sentence_window < 0:
            raise ValueError(f"data.cross_sentence_window must be >= 0, got {cross_sentence_window}")
        self.cross_sentence_window = cross_sentence_window
        self.format, self.paths = format, paths
        self.relations = relations
        self.pair_types = (
            [tuple(p) for p in pair_types] if pair_types else [("Chemical", "Disease"), ("Chemical", "Gene")]
        )
        self.spacy_model, self.skip_bad = spacy_model, skip_bad
        self.gen = {"train": train_docs, "dev": dev_docs, "test": test_docs, "seed": seed}
        self.cache_dir, self.batch_size, self.predict_path = Path(cache_dir), batch_size, predict_path
        self.graph = "dense"
        self.examples: dict[str, list[RelationExample]] = {}
        self.documents: dict[str, list[Document]] = {}
        self.problems = Problems(skip_bad=skip_bad)
        self.encoder: Encoder | None = None
        # per split: candidates within / across sentences and document relations no candidate carries
        self.candidate_counts: dict[str, dict[str, int]] = {}
        self._parses: dict[str, dict[str, list[ParsedSentence]]] = {}

    @property
    def window(self) -> int:
        """The cross-sentence window in use (0 unless given or taken from the checkpoint)."""
        return self.cross_sentence_window or 0

    # ---- reading ----------------------------------------------------------------------------------------
    def _split_path(self, split: str) -> str:
        """The file (ChemProt: the prefix) of ``split``: every file format has all three (__init__ checks)."""
        path = self.paths[split]
        assert path is not None, f"data.{split}_path is unset (format {self.format})"
        return path

    def generated_dir(self) -> Path:
        key = hashlib.sha256(
            json.dumps({**self.gen, "v": GENERATOR_VERSION}, sort_keys=True).encode()
        ).hexdigest()[:12]
        return self.cache_dir / f"generated_{key}"

    def _generated(self) -> None:
        root = self.generated_dir()
        if not (root / "test.json").is_file():
            for split in SPLITS:
                docs, parses, examples = generate_split(split, self.gen[split], seed=self.gen["seed"])
                write_pubtator(docs, root / f"{split}.pubtator")
                write_parses(parses, root / f"{split}.pubtator.parses.json")
                write_tacred(examples, root / f"{split}.json")
        for split in SPLITS:
            # within sentences: the generator's exact sentence-level labels
            self.examples[split] = read_tacred(
                root / f"{split}.json", relations=RELATIONS, problems=self.problems
            )
            docs = read_pubtator(root / f"{split}.pubtator", problems=self.problems)
            self.documents[split] = docs
            if self.window:  # across sentences: labelled from the document relations (as CDR's)
                parses = read_parses(root / f"{split}.pubtator.parses.json", docs)
                self.examples[split] += [e for d in docs for e in document_examples(
                    d, parses[d.id], window=self.window, within_sentence=False)]  # fmt: skip

    def read_documents(self, path: str | Path, fmt: str) -> list[Document]:
        rels = self.relations
        if fmt == "pubtator":
            return read_pubtator(path, relation_types=rels, problems=self.problems)
        if fmt in ("bioc_xml", "bioc_json"):
            return read_bioc(path, fmt=fmt[5:], relation_types=rels, problems=self.problems)  # type: ignore[arg-type]
        if fmt == "chemprot":
            rel_file = Path(f"{path}_relations.tsv")
            kw: dict[str, Any] = {} if rels is None else {"relation_types": rels}
            return read_chemprot(f"{path}_abstracts.tsv", f"{path}_entities.tsv",
                                 rel_file if rel_file.is_file() else None, problems=self.problems, **kw)  # fmt: skip
        raise ValueError(f"not a document format: {fmt}")

    def parses_for(self, path: str | Path, docs: list[Document]) -> dict[str, list[ParsedSentence]]:
        key = str(path)
        if key not in self._parses:  # predict asks twice (setup, then its loader): parse once
            sidecar = Path(f"{path}.parses.json")
            self._parses[key] = (
                read_parses(sidecar, docs) if sidecar.is_file() else parse_documents(docs, self.spacy_model)
            )
        return self._parses[key]

    def examples_from_documents(
        self, path: str | Path, docs: list[Document], *, window: int | None = None
    ) -> list[RelationExample]:
        parses = self.parses_for(path, docs)
        pairs = [(normalise_type(a), normalise_type(b)) for a, b in self.pair_types]
        w = self.window if window is None else window
        return [e for d in docs for e in document_examples(d, parses[d.id], pair_types=pairs, window=w)]

    def count_candidates(self, split: str) -> dict[str, int]:
        """Candidates within / across sentences and, for document data, the document relations that no
        candidate carries (unreachable at this window); stored for metrics.json."""
        examples = self.examples.get(split, [])
        across = sum(map(is_cross_sentence, examples))
        counts = {"candidates_within": len(examples) - across, "candidates_across": across}
        if self.documents.get(split):
            by_doc: dict[str | None, list[RelationExample]] = {}
            for e in examples:
                by_doc.setdefault(e.docid, []).append(e)
            counts["relations"] = sum(len(d.relations) for d in self.documents[split])
            counts["unreachable_relations"] = sum(
                len(cross_sentence_relations(d, by_doc.get(d.id, []))) for d in self.documents[split]
            )
        self.candidate_counts[split] = counts
        return counts

    def setup(self, stage: str) -> None:
        try:
            if stage == "predict":
                if self.predict_path is None:
                    raise DataError("predict needs data.predict_path (a PubTator or BioC file)")
                suffix = Path(self.predict_path).suffix.lower()
                fmt = {".xml": "bioc_xml", ".json": "bioc_json"}.get(suffix, "pubtator")
                # candidates are built in predict_dataloader, once the checkpoint's encoder (and with it
                # the window it was trained with) is loaded
                self.documents["predict"] = self.read_documents(self.predict_path, fmt)
                self.parses_for(self.predict_path, self.documents["predict"])  # fail early without a parser
                return
            if self.examples:
                return
            if self.format == "generated":
                self._generated()
            elif self.format == "tacred":
                for split in SPLITS:
                    self.examples[split] = read_tacred(
                        self._split_path(split), relations=self.relations, problems=self.problems
                    )
            else:
                for split in SPLITS:
                    docs = self.read_documents(self._split_path(split), self.format)
                    self.documents[split] = docs
                    self.examples[split] = self.examples_from_documents(self._split_path(split), docs)
        except (DataError, FileNotFoundError) as err:
            raise PolyheadConfigError(str(err)) from None
        for split in SPLITS:
            self.count_candidates(split)
        empty = [s for s in SPLITS if not self.examples.get(s)]
        if empty:
            raise PolyheadConfigError(
                f"no relation candidates in split(s) {empty} (check data.pair_types and the entity types)"
            )

    def skipped(self) -> dict[str, int]:
        return self.problems.counts()

    def label_counts(self, split: str) -> dict[str, int]:
        return dict(Counter(e.relation for e in self.examples[split]))

    # ---- loaders ----------------------------------------------------------------------------------------
    def _encoder(self) -> Encoder:
        module = self.trainer.lightning_module if self.trainer is not None else None
        enc = getattr(module, "encoder", None) or self.encoder
        if enc is None:
            raise PolyheadConfigError(
                "no trained checkpoint to predict with: run `polyhead-bioie fit` first or pass --ckpt_path"
            )
        return enc

    def _loader(self, split: str, train: bool) -> Any:
        ds = EncodedDataset(self.examples[split], self._encoder())
        return stateful_loader(ds, batch_size=self.batch_size, shuffle=train, collate_fn=_Collate(self.graph))

    def train_dataloader(self) -> Any:
        return self._loader("train", True)

    def val_dataloader(self) -> Any:
        return self._loader("dev", False)

    def test_dataloader(self) -> Any:
        return self._loader("test", False)

    def predict_dataloader(self) -> Any:
        if "predict" not in self.examples:
            if self.predict_path is None or "predict" not in self.documents:
                raise PolyheadConfigError("predict needs data.predict_path (a PubTator or BioC file)")
            w = self.cross_sentence_window
            if w is None:
                w = self._encoder().cross_sentence_window
            try:
                self.examples["predict"] = self.examples_from_documents(
                    self.predict_path, self.documents["predict"], window=w
                )
            except (DataError, FileNotFoundError) as err:
                raise PolyheadConfigError(str(err)) from None
            self.count_candidates("predict")
        return self._loader("predict", False)
