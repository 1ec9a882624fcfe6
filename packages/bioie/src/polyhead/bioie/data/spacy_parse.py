"""Raw text -> sentences, tokens and dependency trees through spaCy (the optional ``spacy`` extra).

Official spaCy models are not installable from the package index, so the model is a name or path the user
gives (``--data.spacy_model en_core_web_sm``, a scispaCy model such as ``en_core_sci_sm``, or a directory
written by ``nlp.to_disk``). Without one, raw text is refused with a message that says how to get one.
Token offsets are spaCy's own character offsets (``token.idx``), so mention spans map exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from polyhead.bioie.data.document import Document, ParsedSentence
from polyhead.bioie.data.problems import DataError

INSTALL_HINT = (
    "raw text needs a dependency parser: install the extra (pip install 'polyhead-bioie[spacy]') and a spaCy "
    "pipeline with a parser (python -m spacy download en_core_web_sm, or a scispaCy model such as "
    "en_core_sci_sm installed from its release wheel), then pass --data.spacy_model NAME_OR_PATH; or put the parses next to the file as "
    "<file>.parses.json (as `polyhead-bioie generate` does)"
)


def load_pipeline(model: str | None) -> Any:
    """``spacy.load(model)``, refusing clearly when spaCy, the model or its parser is missing."""
    if not model:
        raise DataError(INSTALL_HINT)
    try:
        import spacy
    except ImportError:
        raise DataError(f"spaCy is not installed; {INSTALL_HINT}") from None
    try:
        nlp = spacy.load(model)
    except OSError as err:
        raise DataError(f"cannot load spaCy model {model!r} ({err}); {INSTALL_HINT}") from None
    if "parser" not in nlp.pipe_names:
        raise DataError(f"spaCy model {model!r} has no 'parser' component; {INSTALL_HINT}")
    return nlp


def sentences_from_doc(sdoc: Any, offset: int = 0) -> list[ParsedSentence]:
    """A parsed spaCy ``Doc`` -> sentences with 1-based heads (0 = root) and document offsets."""
    out = []
    for sent in sdoc.sents:
        toks = [t for t in sent if not t.is_space]
        index = {t.i: k for k, t in enumerate(toks)}
        heads = [0 if t.head.i == t.i or t.head.i not in index else index[t.head.i] + 1 for t in toks]
        out.append(
            ParsedSentence(
                tokens=[t.text for t in toks],
                offsets=[(offset + t.idx, offset + t.idx + len(t.text)) for t in toks],
                heads=heads,
                deprels=["ROOT" if h == 0 else t.dep_ for t, h in zip(toks, heads)],
                pos=[t.tag_ or t.pos_ or "X" for t in toks],
            )
        )
    return out


def parse_documents(docs: Iterable[Document], model: str | None) -> dict[str, list[ParsedSentence]]:
    """Parse each document's ``title + " " + abstract`` (title and abstract separately, so no sentence
    spans both)."""
    docs = list(docs)
    nlp = load_pipeline(model)
    out = {}
    for doc in docs:
        sents = sentences_from_doc(nlp(doc.title))
        if doc.abstract:
            sents += sentences_from_doc(nlp(doc.abstract), offset=len(doc.title) + 1)
        out[doc.id] = sents
    return out
