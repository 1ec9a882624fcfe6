"""The spaCy path (refusal without a model, offsets from a parsed Doc) and the optional DGL conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyhead.bioie.data.candidates import document_examples
from polyhead.bioie.data.document import Document, Mention, Relation
from polyhead.bioie.data.graphs import tree_edges
from polyhead.bioie.data.problems import DataError
from polyhead.bioie.data.spacy_parse import INSTALL_HINT, load_pipeline, sentences_from_doc


def test_refuses_without_model():
    with pytest.raises(DataError, match="spacy_model"):
        load_pipeline(None)
    with pytest.raises(DataError, match="cannot load spaCy model"):
        load_pipeline("no_such_model_xyz")
    assert "pip install 'polyhead-bioie[spacy]'" in INSTALL_HINT


def test_blank_pipeline_without_parser_is_refused(tmp_path):
    spacy = pytest.importorskip("spacy")
    spacy.blank("en").to_disk(tmp_path / "blank")
    with pytest.raises(DataError, match="no 'parser' component"):
        load_pipeline(str(tmp_path / "blank"))


def test_offsets_survive_tokenisation():
    spacy = pytest.importorskip("spacy")
    from spacy.tokens import Doc

    nlp = spacy.blank("en")
    title = "Cisplatin-induced nephrotoxicity."
    abstract = "Cisplatin  caused renal failure in rats."
    # a parsed Doc as a parser would give it (heads are absolute token indices), built from spaCy's tokens
    toks = nlp(abstract)
    words, spaces = [t.text for t in toks], [bool(t.whitespace_) for t in toks]
    assert words[:2] == ["Cisplatin", " "]  # the double space is a whitespace token
    heads = [2, 0, 2, 4, 2, 2, 7, 5, 2]
    deps = ["nsubj", "dep", "ROOT", "amod", "dobj", "prep", "det", "pobj", "punct"][: len(words)]
    sdoc = Doc(nlp.vocab, words=words, spaces=spaces, heads=heads[: len(words)], deps=deps)
    offset = len(title) + 1
    sents = sentences_from_doc(sdoc, offset=offset)
    text = title + " " + abstract
    for s in sents:
        assert [text[a:b] for a, b in s.offsets] == s.tokens  # exact document offsets, whitespace dropped
        assert sum(h == 0 for h in s.heads) == 1 and all(0 <= h <= len(s.tokens) for h in s.heads)
    doc = Document("1", title, abstract,
                   [Mention(offset, offset + 9, "Cisplatin", "Chemical", ("D002945",)),
                    Mention(offset + 18, offset + 31, "renal failure", "Disease", ("D051437",))],
                   [Relation("CID", "D002945", "D051437")])  # fmt: skip
    (ex,) = document_examples(doc, sents, pair_types=[("Chemical", "Disease")])
    assert ex.tokens[ex.subj_start : ex.subj_end + 1] == ["Cisplatin"]
    assert ex.tokens[ex.obj_start : ex.obj_end + 1] == ["renal", "failure"]
    assert ex.relation == "CID"


def test_dgl_round_trip():
    pytest.importorskip("dgl", exc_type=ImportError)  # dgl 2.1 does not import with torch 2.11
    from polyhead.bioie.data.dgl_convert import from_dgl, to_dgl

    heads = np.array([2, 0, 2, 5, 3])
    edges = torch.from_numpy(tree_edges(heads))
    feats = torch.randn(5, 4)
    back, n, h = from_dgl(to_dgl(edges, 5, feats))
    assert n == 5 and torch.equal(back, edges) and torch.equal(h, feats)
