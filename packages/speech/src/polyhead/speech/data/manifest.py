"""JSON-lines manifests (NeMo's convention): one ``{"audio_filepath", "text", "duration"[, "speaker"]}`` per line.

Relative audio paths are resolved against the manifest's folder. Bad lines are reported with the manifest
path and line number; with ``skip_bad=True`` they are counted and skipped instead (the report says how many
and why). :func:`build_manifest` makes a manifest from a folder of audio files and transcripts in the
LibriSpeech layout (``<speaker>-<chapter>.trans.txt`` files with ``<id> <TEXT>`` lines next to ``<id>.flac``)
or from a plain ``id<TAB>text`` file.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from polyhead.speech.data.audio import AUDIO_SUFFIXES
from polyhead.speech.data.errors import SpeechDataError


class ManifestError(SpeechDataError):
    """A bad manifest line (or a bad utterance found while loading it)."""


@dataclass(frozen=True)
class Utterance:
    audio_filepath: str
    text: str
    duration: float
    speaker: str | None = None
    line: int = 0  # 1-based line in the manifest (0 when built in memory)
    manifest: str = ""

    def where(self) -> str:
        return f"{self.manifest}:{self.line}" if self.manifest else self.audio_filepath


@dataclass
class SkipReport:
    """What a tolerant read skipped, by reason, with the first few places (file:line: reason)."""

    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{where}: {reason}")

    @property
    def total(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """``"2 invalid JSON, 1 unreadable audio"`` (most frequent first), or ``"none"``."""
        return ", ".join(f"{n} {r}" for r, n in self.skipped.most_common()) or "none"


def read_manifest(
    path: str | Path, *, skip_bad: bool = False, report: SkipReport | None = None
) -> list[Utterance]:
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"manifest not found: {p}", reason="missing manifest")
    out = []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
                missing = [k for k in ("audio_filepath", "text", "duration") if k not in rec]
                if missing:
                    raise ValueError(f"missing {missing}")
                duration = float(rec["duration"])
                if not duration > 0:
                    raise ValueError(f"duration must be > 0, got {rec['duration']!r}")
                audio = Path(rec["audio_filepath"])
                if not audio.is_absolute():
                    audio = p.parent / audio
                out.append(Utterance(str(audio), str(rec["text"]), duration, rec.get("speaker"), n, str(p)))
            except (json.JSONDecodeError, ValueError, TypeError) as err:
                msg = f"{p}:{n}: expected a JSON object with audio_filepath, text, duration: {err}"
                reason = (
                    "invalid JSON"
                    if isinstance(err, json.JSONDecodeError)
                    else "missing fields"
                    if str(err).startswith("missing")
                    else "bad record"
                )
                if not skip_bad:
                    raise ManifestError(msg, reason=reason) from None
                if report is not None:
                    report.add(reason, f"{p}:{n}")
    return out


def write_manifest(utts: list[Utterance], path: str | Path) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8") as f:
        for u in utts:
            rec = {k: v for k, v in asdict(u).items() if k not in ("line", "manifest") and v is not None}
            with contextlib.suppress(ValueError):
                rec["audio_filepath"] = str(Path(u.audio_filepath).relative_to(p.parent))
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def build_manifest(
    folder: str | Path, out: str | Path, *, transcripts: str | Path | None = None
) -> list[Utterance]:
    """Manifest for a folder of audio: LibriSpeech ``*.trans.txt`` files, or an ``id<TAB>text`` file."""
    import soundfile as sf

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder not found: {root}")
    texts: dict[str, tuple[str, str | None]] = {}
    sources = [Path(transcripts)] if transcripts else sorted(root.rglob("*.trans.txt"))
    if not sources:
        raise FileNotFoundError(f"{root}: no *.trans.txt files; pass transcripts= an id<TAB>text file")
    for src in sources:
        for n, line in enumerate(src.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            sep = "\t" if transcripts else " "
            if sep not in line:
                raise ManifestError(
                    f"{src}:{n}: expected 'id{'<TAB>' if transcripts else ' '}text', got {line!r}"
                )
            uid, text = line.split(sep, 1)
            speaker = uid.split("-")[0] if not transcripts else None
            texts[uid.strip()] = (text.strip(), speaker)
    audio = {f.stem: f for f in root.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES}
    utts = []
    for uid, (text, speaker) in sorted(texts.items()):
        if uid not in audio:
            raise ManifestError(f"transcript id {uid!r} has no audio file under {root}")
        info = sf.info(str(audio[uid]))
        utts.append(Utterance(str(audio[uid]), text, info.frames / info.samplerate, speaker))
    write_manifest(utts, out)
    return utts
