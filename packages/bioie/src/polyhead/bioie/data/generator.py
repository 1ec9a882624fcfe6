"""Embedded default data: generated abstracts with exact dependency trees and relation labels.

No biomedical corpus can be downloaded here, so ``polyhead-bioie`` generates one from a grammar of relation
templates filled with real entity names (:mod:`polyhead.bioie.data.vocabularies`). Every sentence is built
as a dependency tree (Universal Dependencies v1 labels, as TACRED's ``stanford_deprel``; Penn POS tags), so
heads, spans and labels are exact by construction.

Relations (chemical -> disease: ``induces``, ``treats``; chemical -> gene: ``inhibits``, ``binds``) come in
active, passive (argument order reversed), hedged (``may``; the relation holds) and negated (``did not``;
no relation) forms, with distractors that make the tree matter rather than the words:

- a second clause with other entities (``..., whereas C2 did not alter D2``): the sentence's bag of words
  holds every verb and every entity, and only the attachment says which pair a verb relates;
- relative clauses and participial phrases between subject and verb (long-range arguments) that mention a
  distractor chemical;
- coordinated objects with negation (``D1 but not D2``) and coordinated verbs (``inhibited G1 and bound G2``);
- context phrases with more entities (``In patients with D3 ,``) and titles that mention both arguments
  without relating them (``Effects of C on D``), plus neutral verbs (``accompanied``);
- cross-sentence relations (half the abstracts, generator version 2): a chemical introduced in one sentence
  (``Patients received C for several weeks .``) and related through an anaphor in the next (``The drug
  induced D .``, hedged, negated, or after a distractor disease). They are document-level relations only:
  the sentence-level examples have no pair for them, and the document's relation lines carry them (as
  in BioCreative V CDR, where many relations are stated only across sentences).

Every candidate pair (chemical x disease/gene) of a sentence is one example, so sentences carry positive
and negative pairs together. Entities are split between train, dev and test (so entity pairs are disjoint
and memorising names does not help).
"""

from __future__ import annotations

import numpy as np

from polyhead.bioie.data.document import Document, Mention, ParsedSentence, Relation
from polyhead.bioie.data.tacred import NO_RELATION, RelationExample
from polyhead.bioie.data.vocabularies import Entity, load_vocabularies

GENERATOR_VERSION = 2
RELATIONS = (NO_RELATION, "induces", "treats", "inhibits", "binds")
ENTITY_TYPES = ("Chemical", "Disease", "Gene")
NER_TAG = {"Chemical": "CHEMICAL", "Disease": "DISEASE", "Gene": "GENE"}
TARGET = {"induces": "Disease", "treats": "Disease", "inhibits": "Gene", "binds": "Gene"}
# (past, base, participle) per relation; "neutral" verbs relate nothing.
VERBS = {
    "induces": [("induced", "induce", "induced"), ("caused", "cause", "caused"), ("provoked", "provoke", "provoked")],
    "treats": [("treated", "treat", "treated"), ("alleviated", "alleviate", "alleviated"),
               ("ameliorated", "ameliorate", "ameliorated")],
    "inhibits": [("inhibited", "inhibit", "inhibited"), ("suppressed", "suppress", "suppressed"),
                 ("blocked", "block", "blocked")],
    "binds": [("bound", "bind", "bound"), ("targeted", "target", "targeted")],
    "neutral": [("accompanied", "accompany", "accompanied"), ("preceded", "precede", "preceded")],
}  # fmt: skip
SPLITS = {"train": 0.6, "dev": 0.15, "test": 0.25}
CROSS_SENTENCE_RATE = 0.5  # share of abstracts with a relation stated across two adjacent sentences


class _Sentence:
    """Tokens added left to right; heads are token indices (0-based, -1 = root) set when known."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.pos: list[str] = []
        self.heads: list[int | None] = []
        self.rels: list[str] = []
        self.ner: list[str] = []
        self.mentions: list[tuple[int, int, Entity]] = []  # token span (inclusive) and entity

    def tok(self, word: str, pos: str, rel: str, head: int | None = None) -> int:
        self.words.append(word)
        self.pos.append(pos)
        self.heads.append(head)
        self.rels.append(rel)
        self.ner.append("O")
        return len(self.words) - 1

    def ent(self, e: Entity, rel: str, head: int | None = None) -> tuple[int, int]:
        """Add a mention; earlier words of a multi-word name are ``compound`` dependents of the last."""
        parts = e.name.split()
        start = len(self.words)
        last = start + len(parts) - 1
        for i, w in enumerate(parts):
            is_last = i == len(parts) - 1
            self.tok(w, "NNP" if e.type == "Gene" else "NN", rel if is_last else "compound",
                     head if is_last else last)  # fmt: skip
            self.ner[-1] = NER_TAG[e.type]
        self.mentions.append((start, last, e))
        return start, last

    def set_head(self, i: int, head: int) -> None:
        self.heads[i] = head


class SentenceGrammar:
    """Builds one sentence at a time from the relation templates; returns the sentence and its labels."""

    def __init__(self, pools: dict[str, tuple[Entity, ...]], rng: np.random.Generator) -> None:
        self.pools, self.rng = pools, rng

    # ---- sampling helpers ----------------------------------------------------------------------------
    def pick(self, etype: str, exclude: set[str]) -> Entity:
        pool = self.pools[etype]
        while True:
            e = pool[int(self.rng.integers(len(pool)))]
            if e.name not in exclude:
                exclude.add(e.name)
                return e

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def verb(self, rel: str) -> tuple[str, str, str]:
        forms = VERBS[rel]
        return forms[int(self.rng.integers(len(forms)))]

    # ---- one clause: CHEM [mods] [may] [not] VERB TARGET [coordination] -------------------------------
    def clause(self, s: _Sentence, chem: Entity, rel: str, used: set[str], labels: dict, *,
               allow_mods: bool = True) -> int:  # fmt: skip
        """Append a clause relating ``chem`` by ``rel`` (or ``neutral``); returns the verb's index."""
        ttype = TARGET.get(rel) or ("Disease" if self.chance(0.5) else "Gene")
        target = self.pick(ttype, used)
        negated = self.chance(0.3)
        hedged = self.chance(0.25)
        label = NO_RELATION if negated or rel == "neutral" else rel
        past, base, part = self.verb(rel)
        if self.chance(0.25):  # passive: TARGET was [not] VERBed by CHEM (arguments reversed)
            t_span = s.ent(target, "nsubjpass")
            aux = [s.tok("may", "MD", "aux")] if hedged else []
            if negated and hedged:  # "may not be induced"
                aux.append(s.tok("not", "RB", "neg"))
            aux.append(s.tok("be", "VB", "auxpass") if hedged else s.tok("was", "VBD", "auxpass"))
            if negated and not hedged:  # "was not induced"
                aux.append(s.tok("not", "RB", "neg"))
            v = s.tok(part, "VBN", "ROOT")
            by = s.tok("by", "IN", "case")
            c_span = s.ent(chem, "nmod", v)
            s.set_head(by, c_span[1])
            for i in [t_span[1], *aux]:
                s.set_head(i, v)
            labels[(c_span, t_span)] = label
            return v
        c_span = s.ent(chem, "nsubj")
        if allow_mods and self.chance(0.45):
            self.subject_modifier(s, c_span[1], used)
        pre = []
        if hedged:
            pre.append(s.tok("may", "MD", "aux"))
        elif negated:
            pre.append(s.tok("did", "VBD", "aux"))
        if negated:
            pre.append(s.tok("not", "RB", "neg"))
        v = s.tok(base if (hedged or negated) else past, "VB" if (hedged or negated) else "VBD", "ROOT")
        s.set_head(c_span[1], v)
        for i in pre:
            s.set_head(i, v)
        t_span = s.ent(target, "dobj", v)
        labels[(c_span, t_span)] = label
        r = self.rng.random()
        if r < 0.25:  # coordinated object: "T1 and T2" (same relation) or "T1 but not T2" (none for T2)
            but_not = self.chance(0.5)
            cc = s.tok("but" if but_not else "and", "CC", "cc")
            neg2 = s.tok("not", "RB", "neg") if but_not else None
            t2 = s.ent(self.pick(ttype, used), "conj", t_span[1])
            s.set_head(cc, t2[1])
            if neg2 is not None:
                s.set_head(neg2, t2[1])
            labels[(c_span, t2)] = NO_RELATION if but_not else label
        elif r < 0.45:  # coordinated verb: "... and VERB2 T2" / "but did not VERB2 T2"
            rel2 = str(self.rng.choice(["induces", "treats", "inhibits", "binds"]))
            neg2 = self.chance(0.4)
            cc = s.tok("but" if neg2 else "and", "CC", "cc")
            pre2 = [s.tok("did", "VBD", "aux"), s.tok("not", "RB", "neg")] if neg2 else []
            p2, b2, _ = self.verb(rel2)
            v2 = s.tok(b2 if neg2 else p2, "VB" if neg2 else "VBD", "conj", v)
            for i in [cc, *pre2]:
                s.set_head(i, v2)
            t2 = s.ent(self.pick(TARGET[rel2], used), "dobj", v2)
            labels[(c_span, t2)] = NO_RELATION if neg2 else rel2
        return v

    def subject_modifier(self, s: _Sentence, head: int, used: set[str]) -> None:
        """A long-range modifier after the subject, with a distractor chemical or plain words."""
        s.tok(",", ",", "punct", head)
        if self.chance(0.5):  # ", which was co-administered with C2 ,"
            which = s.tok("which", "WDT", "nsubjpass")
            was = s.tok("was", "VBD", "auxpass")
            v = s.tok("co-administered", "VBN", "acl:relcl", head)
            s.set_head(which, v)
            s.set_head(was, v)
            w = s.tok("with", "IN", "case")
            c2 = s.ent(self.pick("Chemical", used), "nmod", v)
            s.set_head(w, c2[1])
        else:  # ", given at high doses for several weeks ,"
            v = s.tok("given", "VBN", "acl", head)
            for prep, adj, noun in (("at", "high", "doses"), ("for", "several", "weeks")):
                p = s.tok(prep, "IN", "case")
                a = s.tok(adj, "JJ", "amod")
                n = s.tok(noun, "NNS", "nmod", v)
                s.set_head(p, n)
                s.set_head(a, n)
        s.tok(",", ",", "punct", head)

    # ---- sentences --------------------------------------------------------------------------------------
    def body_sentence(self, chems: list[Entity], used: set[str]) -> tuple[_Sentence, dict]:
        s = _Sentence()
        labels: dict[tuple[tuple[int, int], tuple[int, int]], str] = {}
        root_prefix = None
        if self.chance(0.25):  # "We found that" / "These data suggest that": the clause is a ccomp
            if self.chance(0.5):
                subj, verb = s.tok("We", "PRP", "nsubj"), s.tok("found", "VBD", "ROOT")
            else:
                det = s.tok("These", "DT", "det")
                subj = s.tok("data", "NNS", "nsubj")
                verb = s.tok("suggest", "VBP", "ROOT")
                s.set_head(det, subj)
            s.set_head(subj, verb)
            mark = s.tok("that", "IN", "mark")
            root_prefix = (verb, mark)
        context = None
        if root_prefix is None and self.chance(0.35):  # "In patients with D3 ," / "In cells expressing G3 ,"
            p = s.tok("In", "IN", "case")
            if self.chance(0.5):
                n = s.tok("patients", "NNS", "nmod")
                w = s.tok("with", "IN", "case")
                d = s.ent(self.pick("Disease", used), "nmod", n)
                s.set_head(w, d[1])
            else:
                n = s.tok("cells", "NNS", "nmod")
                x = s.tok("expressing", "VBG", "acl", n)
                s.ent(self.pick("Gene", used), "dobj", x)
            s.set_head(p, n)
            context = (n, s.tok(",", ",", "punct"))
        rel = str(self.rng.choice(["induces", "treats", "inhibits", "binds", "induces", "neutral"]))
        v = self.clause(s, chems[0], rel, used, labels)
        if root_prefix is not None:
            s.rels[v] = "ccomp"
            s.set_head(v, root_prefix[0])
            s.set_head(root_prefix[1], v)
            root = root_prefix[0]
        else:
            root = v
        if context is not None:
            s.set_head(context[0], v)
            s.set_head(context[1], v)
        if len(chems) > 1 and self.chance(0.6):  # ", whereas C2 ..." second clause
            comma = s.tok(",", ",", "punct")
            mark = s.tok("whereas", "IN", "mark")
            rel2 = str(self.rng.choice(["induces", "treats", "inhibits", "binds", "neutral"]))
            v2 = self.clause(s, chems[1], rel2, used, labels, allow_mods=False)
            s.rels[v2] = "advcl"
            s.set_head(v2, v)
            s.set_head(comma, v2)
            s.set_head(mark, v2)
        s.tok(".", ".", "punct", root)
        return s, labels

    def cross_sentence_pair(self, used: set[str]) -> tuple[_Sentence, _Sentence, Entity, Entity, str]:
        """Two adjacent sentences that state one relation across them: a chemical introduced in the first
        (``Patients received C for several weeks .``) and related by an anaphor in the second (``The drug
        [may|did not] induce D .``, optionally after a distractor ``In patients with D2 ,``). Neither sentence
        has a chemical x target pair inside it, so only a cross-sentence candidate can carry the relation
        (labelled at the document level, as CDR labels its relations)."""
        chem = self.pick("Chemical", used)
        first = _Sentence()
        if self.chance(0.5):  # "C was administered to the patients ."
            c = first.ent(chem, "nsubjpass")
            was = first.tok("was", "VBD", "auxpass")
            v = first.tok("administered", "VBN", "ROOT")
            to, det = first.tok("to", "IN", "case"), first.tok("the", "DT", "det")
            n = first.tok("patients", "NNS", "nmod", v)
            for i in (c[1], was):
                first.set_head(i, v)
            first.set_head(to, n)
            first.set_head(det, n)
        else:  # "Patients received C for several weeks ."
            subj = first.tok("Patients", "NNS", "nsubj")
            v = first.tok("received", "VBD", "ROOT")
            first.set_head(subj, v)
            first.ent(chem, "dobj", v)
            p, a = first.tok("for", "IN", "case"), first.tok("several", "JJ", "amod")
            n = first.tok("weeks", "NNS", "nmod", v)
            first.set_head(p, n)
            first.set_head(a, n)
        first.tok(".", ".", "punct", v)

        rel = str(self.rng.choice(["induces", "treats", "inhibits", "binds", "induces"]))
        negated, hedged = self.chance(0.3), self.chance(0.25)
        past, base, _ = self.verb(rel)
        second = _Sentence()
        context = None
        if self.chance(0.4):  # distractor target of the other kind, not related: "In patients with D2 ,"
            p = second.tok("In", "IN", "case")
            n = second.tok("patients", "NNS", "nmod")
            w = second.tok("with", "IN", "case")
            d = second.ent(self.pick("Disease", used), "nmod", n)
            second.set_head(w, d[1])
            second.set_head(p, n)
            context = (n, second.tok(",", ",", "punct"))
        if self.chance(0.5):  # "The drug" / "This compound"
            det = second.tok("The" if context is None else "the", "DT", "det")
            subj = second.tok(str(self.rng.choice(["drug", "compound", "agent"])), "NN", "nsubj")
            second.set_head(det, subj)
        else:
            subj = second.tok("It" if context is None else "it", "PRP", "nsubj")
        pre = (
            [second.tok("may", "MD", "aux")]
            if hedged
            else ([second.tok("did", "VBD", "aux")] if negated else [])
        )
        if negated:
            pre.append(second.tok("not", "RB", "neg"))
        v2 = second.tok(base if (hedged or negated) else past, "VB" if (hedged or negated) else "VBD", "ROOT")
        for i in [subj, *pre, *(context or ())]:
            second.set_head(i, v2)
        target = self.pick(TARGET[rel], used)
        second.ent(target, "dobj", v2)
        second.tok(".", ".", "punct", v2)
        return first, second, chem, target, NO_RELATION if negated else rel

    def title_sentence(self, chem: Entity, target: Entity) -> _Sentence:
        """``Effects of C on T .``: both arguments, no relation stated."""
        s = _Sentence()
        head = s.tok("Effects", "NNS", "ROOT", -1)
        of = s.tok("of", "IN", "case")
        c = s.ent(chem, "nmod", head)
        s.set_head(of, c[1])
        on = s.tok("on", "IN", "case")
        t = s.ent(target, "nmod", head)
        s.set_head(on, t[1])
        s.tok(".", ".", "punct", head)
        return s


def _finish(s: _Sentence) -> None:
    missing = [i for i, h in enumerate(s.heads) if h is None and s.rels[i] != "ROOT"]
    if missing:  # a template bug, never the user's input
        raise AssertionError(f"generator: tokens {missing} of {s.words} got no head")


def split_entities(seed: int) -> dict[str, dict[str, tuple[Entity, ...]]]:
    """Disjoint per-split entity pools (shuffled with ``seed``): no entity, so no entity pair, is shared."""
    vocab = load_vocabularies()
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, tuple[Entity, ...]]] = {s: {} for s in SPLITS}
    for etype, ents in vocab.items():
        order = rng.permutation(len(ents))
        bounds = np.cumsum([0] + [round(f * len(ents)) for f in SPLITS.values()])
        bounds[-1] = len(ents)
        for k, split in enumerate(SPLITS):
            out[split][etype] = tuple(ents[i] for i in order[bounds[k] : bounds[k + 1]])
    return out


def generate_split(
    split: str, num_docs: int, *, seed: int = 0, sentences_per_doc: tuple[int, int] = (2, 4)
) -> tuple[list[Document], dict[str, list[ParsedSentence]], list[RelationExample]]:
    """Generate ``num_docs`` abstracts of one split.

    Returns:
        The documents (text, mentions with ids, document-level relations), their parses (per document,
        sentence by sentence, with document offsets) and the sentence-level relation examples (one per
        candidate chemical x disease/gene pair, with exact labels).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if num_docs < 1:
        raise ValueError(f"num_docs must be >= 1, got {num_docs}")
    pools = split_entities(seed)[split]
    rng = np.random.default_rng([seed, list(SPLITS).index(split), GENERATOR_VERSION])
    grammar = SentenceGrammar(pools, rng)
    docs, parses, examples = [], {}, []
    for d in range(num_docs):
        docid = f"{split}{d:06d}"
        used: set[str] = set()
        chems = [grammar.pick("Chemical", used) for _ in range(2)]
        n_body = int(rng.integers(sentences_per_doc[0], sentences_per_doc[1] + 1))
        built: list[tuple[_Sentence, dict]] = []
        for _ in range(n_body):
            # the abstract's chemicals recur across its sentences (document-level aggregation by id)
            order = chems if rng.random() < 0.5 else chems[::-1]
            built.append(grammar.body_sentence(list(order), used))
        first = built[0][0].mentions
        tgt = next((e for _, _, e in first if e.type != "Chemical"), grammar.pick("Disease", used))
        cross: list[Relation] = []
        if rng.random() < CROSS_SENTENCE_RATE:  # a relation stated across two adjacent sentences
            s1, s2, c_ent, t_ent, rel = grammar.cross_sentence_pair(used)
            at = int(rng.integers(len(built) + 1))
            built[at:at] = [(s1, {}), (s2, {})]
            if rel != NO_RELATION:
                cross.append(Relation(rel, c_ent.id, t_ent.id))
        built.insert(0, (grammar.title_sentence(chems[0], tgt), {}))
        text_parts, offset = [], 0
        doc_sents: list[ParsedSentence] = []
        mentions: list[Mention] = []
        positives: set[Relation] = set(cross)
        for k, (s, labels) in enumerate(built):
            _finish(s)
            offs = []
            for w in s.words:
                offs.append((offset, offset + len(w)))
                offset += len(w) + 1
            text_parts.append(" ".join(s.words))
            heads = [0 if h in (None, -1) else h + 1 for h in s.heads]
            doc_sents.append(ParsedSentence(list(s.words), offs, heads, list(s.rels), list(s.pos)))
            for a, b, e in s.mentions:
                mentions.append(Mention(offs[a][0], offs[b][1], e.name, e.type, (e.id,)))
            for _ci, (ca, cb, ce) in enumerate(s.mentions):
                if ce.type != "Chemical":
                    continue
                for ta, tb, te in s.mentions:
                    if te.type == "Chemical":
                        continue
                    label = labels.get(((ca, cb), (ta, tb)), NO_RELATION)
                    if label != NO_RELATION:
                        positives.add(Relation(label, ce.id, te.id))
                    examples.append(
                        RelationExample(
                            id=f"{docid}-s{k}-{ca}-{ta}", tokens=list(s.words), subj_start=ca, subj_end=cb,
                            obj_start=ta, obj_end=tb, subj_type=ce.type, obj_type=te.type, heads=heads,
                            deprels=list(s.rels), pos=list(s.pos), ner=list(s.ner), relation=label,
                            docid=docid, subj_id=ce.id, obj_id=te.id, char_offsets=offs,
                        )
                    )  # fmt: skip
        title, abstract = text_parts[0], " ".join(text_parts[1:])
        docs.append(
            Document(
                docid, title, abstract, mentions, sorted(positives, key=lambda r: (r.type, r.arg1, r.arg2))
            )
        )
        parses[docid] = doc_sents
    return docs, parses, examples
