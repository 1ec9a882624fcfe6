"""TACRED/AGGCN JSON: round trip, validation of heads, cycles and spans, problems named by record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from polyhead.bioie.data.problems import DataError, Problems
from polyhead.bioie.data.tacred import (
    RelationExample,
    heads_have_cycle,
    read_tacred,
    validate_example,
    write_tacred,
)


def _example(i: int = 0) -> RelationExample:
    # "aspirin induced severe headache ." : induced is the root
    return RelationExample(
        id=f"ex{i}", tokens=["aspirin", "induced", "severe", "headache", "."],
        subj_start=0, subj_end=0, obj_start=2, obj_end=3, subj_type="Chemical", obj_type="Disease",
        heads=[2, 0, 4, 2, 2], deprels=["nsubj", "ROOT", "amod", "dobj", "punct"],
        pos=["NN", "VBD", "JJ", "NN", "."], ner=["CHEMICAL", "O", "DISEASE", "DISEASE", "O"],
        relation="induces", docid="d1", subj_id="C1", obj_id="D1", char_offsets=[(0, 7), (8, 15),
        (16, 22), (23, 31), (32, 33)],
    )  # fmt: skip


def test_round_trip(tmp_path):
    exs = [_example(i) for i in range(3)]
    path = write_tacred(exs, tmp_path / "train.json")
    back = read_tacred(path, relations=["no_relation", "induces"])
    assert [e.to_json() for e in back] == [e.to_json() for e in exs]
    rec = json.loads(path.read_text())[0]  # the keys AGGCN's loader reads
    for key in ("token", "stanford_head", "stanford_deprel", "stanford_pos", "stanford_ner", "subj_type"):
        assert key in rec


def test_cycle_detection_against_reference():
    rng = np.random.default_rng(0)

    def reference(heads):  # walk up from every token, at most n steps
        n = len(heads)
        for i in range(1, n + 1):
            node, steps = i, 0
            while node != 0 and steps <= n:
                node, steps = heads[node - 1], steps + 1
            if node != 0:
                return True
        return False

    found = {True: 0, False: 0}
    for _ in range(300):
        n = int(rng.integers(1, 12))
        heads = rng.integers(0, n + 1, size=n).tolist()
        expected = reference(heads)
        found[expected] += 1
        assert heads_have_cycle(heads) == expected, heads
    assert found[True] > 20 and found[False] > 20  # both cases were exercised


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"heads": [2, 0, 4, 2]}, "length_mismatch"),
        ({"heads": [2, 3, 2, 2, 2]}, "cycle"),
        ({"heads": [2, 0, 4, 9, 2]}, "bad_head"),
        ({"obj_end": 5}, "bad_span"),
        ({"relation": "cures"}, "unknown_relation"),
    ],
)
def test_validation_reasons(change, reason):
    ex = _example()
    for k, v in change.items():
        setattr(ex, k, v)
    reasons = [r for r, _ in validate_example(ex, ["no_relation", "induces"])]
    assert reason in reasons
    assert validate_example(_example(), ["no_relation", "induces"]) == []


def test_bad_records_named_or_counted(tmp_path):
    good = _example(0).to_json()
    cyc = {**_example(1).to_json(), "stanford_head": [2, 3, 2, 2, 2]}
    short = {**_example(2).to_json(), "stanford_deprel": ["nsubj"]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([good, cyc, short]))
    with pytest.raises(DataError) as err:
        read_tacred(path)
    msg = str(err.value)
    assert str(path) in msg and "record 1 (id ex1)" in msg and "record 2 (id ex2)" in msg
    assert "cycle" in msg and "stanford_deprel has 1 entries for 5 tokens" in msg
    problems = Problems(skip_bad=True)
    kept = read_tacred(path, problems=problems)
    assert [e.id for e in kept] == ["ex0"]
    assert problems.counts() == {"cycle": 1, "length_mismatch": 1}


def test_truncated_json_named_by_line(tmp_path):
    path = tmp_path / "cut.json"
    text = json.dumps([_example(0).to_json(), _example(1).to_json()], indent=1)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match=r"cut.json: line \d+: invalid JSON"):
        read_tacred(path)
