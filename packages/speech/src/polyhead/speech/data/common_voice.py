"""Mozilla Common Voice: a language folder of a release -> JSON-lines manifests.

A Common Voice release unpacks to ``cv-corpus-<version>/<locale>/`` with ``clips/*.mp3`` and tab-separated
files with a header row: ``train.tsv``, ``dev.tsv``, ``test.tsv`` (the official speaker-disjoint splits),
``validated.tsv`` (every clip with more up- than down-votes, a superset of the three), ``invalidated.tsv``,
``other.tsv``, and in releases since 2022 ``clip_durations.tsv`` (``clip``, ``duration[ms]``). A row has
``client_id`` (the speaker's hash), ``path`` (the clip's file name under ``clips/``), ``sentence`` (the
prompt as written: case, punctuation, curly apostrophes) and votes, age, gender, accents, locale, segment.

The utterance is the clip (``path``), the speaker ``client_id``; the text is the sentence as written (the
run's :class:`~polyhead.speech.data.normalize.TextNormalizer` normalises it for training and scoring).
Durations come from ``clip_durations.tsv`` when present, else from the clip's header. Sentences may contain
quote characters, so the TSVs are read without quoting rules, as Common Voice writes them.
"""

from __future__ import annotations

import csv
from pathlib import Path

from polyhead.speech.data.audio import AudioError, audio_duration
from polyhead.speech.data.manifest import ManifestError, SkipReport, Utterance, write_manifest

COMMON_VOICE_SPLITS = ("train", "dev", "test", "validated", "invalidated", "other")
REQUIRED_COLUMNS = ("client_id", "path", "sentence")


def _read_tsv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows, None)
        if header is None:
            raise ManifestError(f"{path}: empty file (expected a header row)", reason="bad TSV")
        return header, [(n, r) for n, r in enumerate(rows, start=2) if any(c.strip() for c in r)]


def clip_durations(folder: Path) -> dict[str, float]:
    """``clip file name -> seconds`` from ``clip_durations.tsv`` (empty when the release has none)."""
    path = folder / "clip_durations.tsv"
    if not path.is_file():
        return {}
    header, rows = _read_tsv(path)
    if len(header) < 2:
        raise ManifestError(
            f"{path}:1: expected the columns clip, duration[ms]; got {header}", reason="bad TSV"
        )
    out = {}
    for n, r in rows:
        try:
            out[r[0]] = float(r[1]) / 1000.0
        except (IndexError, ValueError):
            raise ManifestError(
                f"{path}:{n}: expected '<clip>\\t<milliseconds>', got {r}", reason="bad TSV"
            ) from None
    return out


def read_common_voice(
    folder: str | Path, split: str = "train", *, skip_bad: bool = False, report: SkipReport | None = None
) -> list[Utterance]:
    """The utterances of ``<folder>/<split>.tsv`` whose clip exists under ``<folder>/clips``.

    Bad rows (missing columns, an empty sentence, a clip that is missing or unreadable) raise a
    :class:`ManifestError` naming the TSV and line, or with ``skip_bad`` are counted in ``report``.
    """
    root = Path(folder)
    if split not in COMMON_VOICE_SPLITS:
        raise ValueError(f"Common Voice split must be one of {COMMON_VOICE_SPLITS}, got {split!r}")
    tsv = root / f"{split}.tsv"
    if not tsv.is_file():
        raise ManifestError(
            f"{tsv}: no such file (expected a Common Voice language folder with {split}.tsv and clips/)",
            reason="missing manifest",
        )
    header, rows = _read_tsv(tsv)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(
            f"{tsv}:1: header lacks the Common Voice columns {missing}; got {header}", reason="bad TSV"
        )
    col = {c: header.index(c) for c in REQUIRED_COLUMNS}
    durations = clip_durations(root)
    report = report if report is not None else SkipReport()
    out = []
    for n, r in rows:
        try:
            if len(r) <= max(col.values()):
                raise ManifestError(
                    f"{tsv}:{n}: expected {len(header)} tab-separated columns, got {len(r)}",
                    reason="bad TSV row",
                )
            clip, sentence = r[col["path"]].strip(), r[col["sentence"]].strip()
            if not sentence:
                raise ManifestError(f"{tsv}:{n}: empty sentence for clip {clip!r}", reason="empty transcript")
            audio = root / "clips" / clip
            if clip in durations and audio.is_file():
                duration = durations[clip]
            else:
                try:
                    duration = audio_duration(audio)
                except AudioError as err:
                    raise ManifestError(f"{tsv}:{n}: {err}", reason=err.reason) from None
            out.append(Utterance(str(audio), sentence, duration, r[col["client_id"]], n, str(tsv)))
        except ManifestError as err:
            if not skip_bad:
                raise
            report.add(err.reason, f"{tsv}:{n}")
    return out


def build_common_voice_manifest(
    folder: str | Path, out: str | Path, *, split: str = "train", skip_bad: bool = False
) -> tuple[list[Utterance], SkipReport]:
    """Write ``out`` (a JSON-lines manifest) for one split of a Common Voice language folder."""
    report = SkipReport()
    utts = read_common_voice(folder, split, skip_bad=skip_bad, report=report)
    write_manifest(utts, out)
    return utts, report
