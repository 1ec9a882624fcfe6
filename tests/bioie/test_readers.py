"""PubTator, BioC XML/JSON and ChemProt: round trips of generated documents and malformed input reported by
file and line or document id (or skipped and counted)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from polyhead.bioie.data.bioc_io import read_bioc, write_bioc
from polyhead.bioie.data.candidates import document_examples
from polyhead.bioie.data.chemprot import read_chemprot, write_chemprot
from polyhead.bioie.data.document import Document, Mention, Relation
from polyhead.bioie.data.generator import generate_split
from polyhead.bioie.data.problems import DataError, Problems
from polyhead.bioie.data.pubtator import read_parses, read_pubtator, write_parses, write_pubtator


@pytest.fixture(scope="module")
def generated():
    return generate_split("dev", 12, seed=3)


def _nokeys(docs):
    return [
        dataclasses.replace(d, mentions=[dataclasses.replace(m, key=None) for m in d.mentions]) for d in docs
    ]


def test_pubtator_round_trip(tmp_path, generated):
    docs, parses, _ = generated
    path = write_pubtator(docs, tmp_path / "x.pubtator")
    lines = path.read_text().splitlines()
    assert lines[0].startswith(f"{docs[0].id}|t|") and lines[1].startswith(f"{docs[0].id}|a|")
    assert all(not ln.endswith("\t") for ln in lines)  # CDR mention lines have exactly 6 fields
    assert read_pubtator(path) == docs
    write_parses(parses, tmp_path / "x.pubtator.parses.json")
    back = read_parses(tmp_path / "x.pubtator.parses.json", docs)
    assert back == parses


@pytest.mark.parametrize("suffix", ["xml", "json"])
def test_bioc_round_trip(tmp_path, generated, suffix):
    docs, _, _ = generated
    path = write_bioc(docs, tmp_path / f"x.{suffix}")
    back = read_bioc(path)
    assert _nokeys(back) == docs
    assert all(m.key is not None for d in back for m in d.mentions)  # annotation ids kept as keys


def test_chemprot_round_trip(tmp_path):
    doc = Document("111", "Aspirin inhibits COX1 .", "It binds COX2 strongly .",
                   [Mention(0, 7, "Aspirin", "CHEMICAL", (), "T1"), Mention(17, 21, "COX1", "GENE-Y", (), "T2"),
                    Mention(33, 37, "COX2", "GENE-N", (), "T3")],
                   [Relation("CPR:4", "T1", "T2")])  # fmt: skip
    paths = write_chemprot([doc], tmp_path / "cp")
    back = read_chemprot(*paths)
    assert back == [doc]
    # the six-column release format: only rows marked Y count
    paths[2].write_text(
        "111\tCPR:4\tY\tINHIBITOR\tArg1:T1\tArg2:T2\n111\tCPR:1\tN\tPART-OF\tArg1:T1\tArg2:T3\n"
    )
    assert read_chemprot(*paths)[0].relations == [Relation("CPR:4", "T1", "T2")]


def test_document_candidates_match_generated_examples(generated):
    docs, parses, examples = generated
    from_docs = [e for d in docs for e in document_examples(d, parses[d.id])]
    # the same mention pairs (subject/object tokens) whatever path built them
    key = lambda e: (e.docid, tuple(e.tokens), e.subj_start, e.obj_start)  # noqa: E731
    assert sorted(map(key, from_docs)) == sorted(map(key, examples))
    # CDR-style labels from document relations agree with the exact labels on the positive pairs
    exact = {key(e): e.relation for e in examples}
    assert all(e.relation == exact[key(e)] for e in from_docs if exact[key(e)] != "no_relation")


CDR = (
    "100|t|Lithium induced polyuria .\n"
    "100|a|Polyuria was seen .\n"
    "100\t0\t7\tLithium\tChemical\tD008094\n"
    "100\t16\t24\tpolyuria\tDisease\tD011141\n"
    "100\tCID\tD008094\tD011141\n"
    "\n"
    "200|t|Cocaine and seizures .\n"
    "200\t0\t7\tCocaine\tChemical\tD003042\n"
)


@pytest.mark.parametrize(
    "broken, line, reason",
    [
        (CDR.replace("100\t16\t24\tpolyuria", "100\t15\t23\tpolyuria"), 4, "bad_offsets"),
        (CDR.replace("100\t16\t24\tpolyuria", "100\t16\t94\tpolyuria"), 4, "outside_text"),
        (CDR.replace("100\tCID", "100\tXYZ"), 5, "unknown_relation"),
        (CDR.replace("200\t0\t7\tCocaine\tChemical\tD003042\n", "200\t0\t7\tCoc"), 8, "truncated"),
        (CDR.replace("100\tCID\tD008094\tD011141", "100\tCID\tD008094\tD999999"), 5, "unknown_concept"),
    ],
)
def test_pubtator_malformed_named_by_line(tmp_path, broken, line, reason):
    path = tmp_path / "cdr.txt"
    path.write_text(broken)
    with pytest.raises(DataError, match=rf"cdr.txt:{line}\b"):
        read_pubtator(path, relation_types={"CID"})
    problems = Problems(skip_bad=True)
    docs = read_pubtator(path, relation_types={"CID"}, problems=problems)
    assert problems.counts() == {reason: 1}
    assert len(docs) == 1  # the other document is kept


def test_pubtator_valid_cdr_example(tmp_path):
    path = tmp_path / "cdr.txt"
    path.write_text(CDR)
    docs = read_pubtator(path, relation_types={"CID"})
    assert docs[0].relations == [Relation("CID", "D008094", "D011141")]
    assert docs[0].text[16:24] == "polyuria" and docs[1].abstract == ""


def test_bioc_malformed_named_by_document(tmp_path, generated):
    docs, _, _ = generated
    path = write_bioc(docs[:2], tmp_path / "x.json")
    data = json.loads(path.read_text())
    ann = data["documents"][1]["passages"][1]["annotations"][0]
    ann["locations"][0]["offset"] += 1
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=rf"document {docs[1].id}\) annotation {ann['id']}: .*covers"):
        read_bioc(path)
    path.write_text(path.read_text()[:500])
    with pytest.raises(DataError, match="not a readable BioC JSON file"):
        read_bioc(path)


def test_chemprot_malformed(tmp_path):
    doc = Document("7", "Aspirin inhibits COX1 .", "", [Mention(0, 7, "Aspirin", "CHEMICAL", (), "T1"),
                   Mention(17, 21, "COX1", "GENE-Y", (), "T2")], [Relation("CPR:4", "T1", "T2")])  # fmt: skip
    a, e, r = write_chemprot([doc], tmp_path / "cp")
    e.write_text(e.read_text().replace("\t17\t21\t", "\t18\t22\t"))
    r.write_text("7\tCPR:77\tArg1:T1\tArg2:T2\n")
    with pytest.raises(DataError) as err:
        read_chemprot(a, e, r)
    assert "cp_entities.tsv:2" in str(err.value) and "cp_relations.tsv:1" in str(err.value)
