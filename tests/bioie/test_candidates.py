"""Cross-sentence candidates: the merged tree, counts per window, the generator's cross-sentence relations and
document-level recall."""

from __future__ import annotations

import numpy as np
import pytest

from polyhead.bioie.data.candidates import (
    NEXT_SENTENCE,
    cross_sentence_relations,
    document_examples,
    is_cross_sentence,
)
from polyhead.bioie.data.document import Document, Mention, ParsedSentence, Relation
from polyhead.bioie.data.generator import generate_split
from polyhead.bioie.data.graphs import prune_to_path
from polyhead.bioie.data.tacred import NO_RELATION, validate_example
from polyhead.bioie.metrics import aggregate_by_concept, document_scores


def _sentence(words: list[str], heads: list[int], rels: list[str], start: int) -> ParsedSentence:
    offs, o = [], start
    for w in words:
        offs.append((o, o + len(w)))
        o += len(w) + 1
    return ParsedSentence(words, offs, heads, rels, ["X"] * len(words))


def _two_sentences() -> tuple[Document, list[ParsedSentence]]:
    # "Aspirin was given ." + "It induced acute asthma ." (title = sentence 0, abstract = sentence 1)
    title, abstract = "Aspirin was given .", "It induced acute asthma ."
    s0 = _sentence(
        ["Aspirin", "was", "given", "."], [3, 3, 0, 3], ["nsubjpass", "auxpass", "ROOT", "punct"], 0
    )
    s1 = _sentence(["It", "induced", "acute", "asthma", "."], [2, 0, 4, 2, 2],
                   ["nsubj", "ROOT", "amod", "dobj", "punct"], len(title) + 1)  # fmt: skip
    a = len(title) + 1 + len("It induced ")
    doc = Document("7", title, abstract,
                   [Mention(0, 7, "Aspirin", "Chemical", ("D001241",)),
                    Mention(a, a + 12, "acute asthma", "Disease", ("D001249",))],
                   [Relation("CID", "D001241", "D001249")])  # fmt: skip
    return doc, [s0, s1]


def test_merged_tree_of_two_sentences_by_hand():
    doc, sents = _two_sentences()
    assert document_examples(doc, sents, pair_types=[("Chemical", "Disease")]) == []
    (ex,) = document_examples(doc, sents, pair_types=[("Chemical", "Disease")], window=1)
    assert ex.tokens == ["Aspirin", "was", "given", ".", "It", "induced", "acute", "asthma", "."]
    # sentence 1's heads shifted by 4; its root ("induced", token 6) hangs from sentence 0's root (token 3)
    assert ex.heads == [3, 3, 0, 3, 6, 3, 8, 6, 6]
    assert ex.deprels[5] == NEXT_SENTENCE and ex.deprels[2] == "ROOT" and ex.deprels.count(NEXT_SENTENCE) == 1
    assert (ex.subj_start, ex.subj_end, ex.obj_start, ex.obj_end) == (0, 0, 6, 7)
    assert ex.ner == ["CHEMICAL", "O", "O", "O", "O", "O", "DISEASE", "DISEASE", "O"]
    assert [doc.text[a:b] for a, b in ex.char_offsets] == ex.tokens
    assert ex.relation == "CID" and (ex.subj_id, ex.obj_id) == ("D001241", "D001249")
    assert ex.id == "7-s0-s1-0-31" and is_cross_sentence(ex)
    assert validate_example(ex) == []  # one tree, no cycle
    # path-centric pruning (K = 0) over the merged tree: subject -> given -> induced -> object
    keep = prune_to_path(np.array(ex.heads), (0, 0), (6, 7), k=0)
    assert np.nonzero(keep)[0].tolist() == [0, 2, 5, 6, 7]  # the object span is "acute asthma"


def test_subject_in_the_later_sentence_is_reindexed():
    doc, sents = _two_sentences()
    # the disease first: subject Disease (sentence 1) x object Chemical (sentence 0)
    (ex,) = document_examples(doc, sents, pair_types=[("Disease", "Chemical")], window=2)
    assert (ex.subj_start, ex.subj_end, ex.obj_start, ex.obj_end) == (6, 7, 0, 0)
    assert ex.relation == NO_RELATION  # the document relation is Chemical -> Disease only


def _random_document(rng: np.random.Generator, n_sents: int) -> tuple[Document, list[ParsedSentence], list]:
    """Sentences of random trees with random Chemical / Disease mentions (one token each); the reference
    list holds (sentence, type, token) per mention."""
    sents, mentions, ref, text = [], [], [], []
    offset = 0
    for k in range(n_sents):
        n = int(rng.integers(3, 9))
        words = [f"w{k}_{i}" for i in range(n)]
        heads = [0] + [int(rng.integers(1, i + 1)) for i in range(1, n)]  # each token hangs on an earlier one
        perm = rng.permutation(n)  # relabel so the root is anywhere
        inv = np.argsort(perm)
        heads = [0 if heads[inv[j]] == 0 else int(perm[heads[inv[j]] - 1]) + 1 for j in range(n)]
        s = _sentence(words, heads, ["dep" if h else "ROOT" for h in heads], offset)
        for i in rng.choice(n, size=int(rng.integers(0, 4)), replace=False):
            t = "Chemical" if rng.random() < 0.5 else "Disease"
            a, b = s.offsets[int(i)]
            mentions.append(Mention(a, b, words[int(i)], t, (f"{t[0]}{k}_{i}",)))
            ref.append((k, t, int(i)))
        sents.append(s)
        text.append(" ".join(words))
        offset += len(text[-1]) + 1
    title, abstract = text[0], " ".join(text[1:])
    return Document("r", title, abstract, mentions), sents, ref


@pytest.mark.parametrize("window", [0, 1, 2])
def test_candidate_counts_and_merged_trees_against_a_reference(window):
    rng = np.random.default_rng(window)
    for _ in range(20):
        doc, sents, ref = _random_document(rng, int(rng.integers(1, 6)))
        got = document_examples(doc, sents, pair_types=[("Chemical", "Disease")], window=window)
        expected = sorted((sk, si, ok, oi) for sk, st, si in ref for ok, ot, oi in ref
                          if st == "Chemical" and ot == "Disease" and abs(sk - ok) <= window)  # fmt: skip
        assert len(got) == len(expected)
        for e in got:
            assert validate_example(e) == []
            assert sum(h == 0 for h in e.heads) == 1  # one tree however many sentences were merged
            assert [doc.text[a:b] for a, b in e.char_offsets] == e.tokens
            (s_word,), (o_word,) = (
                e.tokens[e.subj_start : e.subj_end + 1],
                e.tokens[e.obj_start : e.obj_end + 1],
            )
            assert e.ner[e.subj_start] == "CHEMICAL" and e.ner[e.obj_start] == "DISEASE"
            sk, ok = int(s_word.split("_")[0][1:]), int(o_word.split("_")[0][1:])
            assert is_cross_sentence(e) == (sk != ok)
            # the merged window is exactly the sentences from the first mention's to the last one's
            lo, hi = min(sk, ok), max(sk, ok)
            assert len(e.tokens) == sum(len(s.tokens) for s in sents[lo : hi + 1])
        got_keys = sorted(
            (int(e.tokens[e.subj_start].split("_")[0][1:]), int(e.tokens[e.subj_start].split("_")[1]),
             int(e.tokens[e.obj_start].split("_")[0][1:]), int(e.tokens[e.obj_start].split("_")[1]))
            for e in got
        )  # fmt: skip
        assert got_keys == expected


def test_small_document_counts_per_window():
    # three sentences, each with one chemical and one disease: 3 within, +4 at distance 1, +2 at distance 2
    rng = np.random.default_rng(3)
    doc, sents, _ = _random_document(rng, 3)
    ments = []
    for k, s in enumerate(sents):
        for i, t in ((0, "Chemical"), (1, "Disease")):
            a, b = s.offsets[i]
            ments.append(Mention(a, b, s.tokens[i], t, (f"{t}{k}",)))
    doc = Document(doc.id, doc.title, doc.abstract, ments, [Relation("CID", "Chemical0", "Disease2")])
    counts = [
        len(document_examples(doc, sents, pair_types=[("Chemical", "Disease")], window=w)) for w in (0, 1, 2)
    ]
    assert counts == [3, 7, 9]
    with pytest.raises(ValueError, match="window"):
        document_examples(doc, sents, window=-1)
    only_across = document_examples(doc, sents, pair_types=[("Chemical", "Disease")], window=2,
                                    within_sentence=False)  # fmt: skip
    assert len(only_across) == 6 and all(map(is_cross_sentence, only_across))
    # the relation two sentences apart is unreachable until the window covers it
    for w, left in ((0, 1), (1, 1), (2, 0)):
        ex = document_examples(doc, sents, pair_types=[("Chemical", "Disease")], window=w)
        assert len(cross_sentence_relations(doc, ex)) == left


def test_generated_cross_sentence_relations_and_document_recall():
    docs, parses, exact = generate_split("test", 40, seed=0)
    # window 0 reproduces the generator's sentence-level candidates; some relations exist only across sentences
    w0 = [e for d in docs for e in document_examples(d, parses[d.id])]
    assert len(w0) == len(exact) and not any(map(is_cross_sentence, w0))
    # ... with the same NER tags (a generated sentence never names one concept twice)
    by_key = {(e.docid, e.subj_start, e.obj_start, tuple(e.tokens)): e.ner for e in exact}
    assert all(by_key[(e.docid, e.subj_start, e.obj_start, tuple(e.tokens))] == e.ner for e in w0)
    gold = {(d.id, r.type, r.arg1, r.arg2) for d in docs for r in d.relations}

    def oracle_recall(examples):
        # a model that labels every candidate correctly, aggregated by concept id as the CDR evaluation does
        rows = [
            (e.docid, e.subj_id, e.obj_id, e.relation, 1.0) for e in examples if e.relation != NO_RELATION
        ]
        return document_scores(set(aggregate_by_concept(rows)), gold)["doc_recall"]

    unreachable = sum(len(cross_sentence_relations(d, [e for e in exact if e.docid == d.id])) for d in docs)
    assert unreachable >= 5
    assert oracle_recall(exact) == pytest.approx(1 - unreachable / len(gold))
    # window 1: the exact within-sentence examples plus cross-sentence ones labelled from the documents
    w1 = exact + [
        e for d in docs for e in document_examples(d, parses[d.id], window=1, within_sentence=False)
    ]
    assert oracle_recall(w1) == 1.0
    assert sum(len(cross_sentence_relations(d, [e for e in w1 if e.docid == d.id])) for d in docs) == 0
    # each cross-only relation has its arguments in adjacent sentences and a positive cross-sentence candidate
    for d in docs:
        for r in cross_sentence_relations(d, [e for e in exact if e.docid == d.id]):
            pos = [
                e
                for e in w1
                if e.docid == d.id and (e.subj_id, e.obj_id, e.relation) == (r.arg1, r.arg2, r.type)
            ]
            assert pos and all(is_cross_sentence(e) and e.deprels.count(NEXT_SENTENCE) == 1 for e in pos)


def test_other_mentions_of_an_argument_concept_are_marked():
    # "Aspirin and heparin were given ." + "Aspirin induced asthma ."
    t, a = "Aspirin and heparin were given .", "Aspirin induced asthma ."
    s0 = _sentence(t.split(), [5, 3, 1, 5, 0, 5], ["nsubjpass", "cc", "conj", "auxpass", "ROOT", "punct"], 0)
    s1 = _sentence(a.split(), [2, 0, 2, 2], ["nsubj", "ROOT", "dobj", "punct"], len(t) + 1)
    b = len(t) + 1
    doc = Document("9", t, a, [Mention(0, 7, "Aspirin", "Chemical", ("D1",)),
                               Mention(12, 19, "heparin", "Chemical", ("D2",)),
                               Mention(b, b + 7, "Aspirin", "Chemical", ("D1",)),
                               Mention(b + 16, b + 22, "asthma", "Disease", ("D3",))],
                   [Relation("CID", "D1", "D3")])  # fmt: skip
    ex = {(e.tokens[e.subj_start], e.subj_start, e.obj_start): e
          for e in document_examples(doc, [s0, s1], pair_types=[("Chemical", "Disease")], window=1)}  # fmt: skip
    assert set(ex) == {("Aspirin", 0, 8), ("heparin", 2, 8), ("Aspirin", 0, 2)}  # the last: within sentence 1
    assert ex["Aspirin", 0, 8].ner[6] == "SAME_AS_SUBJ" and ex["Aspirin", 0, 8].relation == "CID"
    assert ex["heparin", 2, 8].ner[6] == "CHEMICAL" and ex["heparin", 2, 8].relation == NO_RELATION
    assert ex["heparin", 2, 8].ner[:3] == ["CHEMICAL", "O", "CHEMICAL"]
    assert ex["Aspirin", 0, 2].ner == ["CHEMICAL", "O", "DISEASE", "O"]
