"""The human recordings that ship with Debian's ``alsa-utils``: a real read-speech test set.

``apt-get install alsa-utils`` installs ``/usr/share/sounds/alsa/``: eight channel names read by one human
speaker for ``speaker-test`` (``Front_Center.wav`` says "front center", ..., ``Side_Right.wav`` "side
right"; 48 kHz mono WAV, about 1.4 s each) and ``Noise.wav`` (noise, not speech). They are the only
recordings of human speech found in the Debian packages the project installs, so they are the held-out
human speaker against which models trained on synthesised voices are scored (packages/speech/README.md).
The transcript is the file name (``Front_Center`` -> "front center"); ``Noise.wav`` is left out.
"""

from __future__ import annotations

from pathlib import Path

from polyhead.speech.data.manifest import ManifestError, Utterance, write_manifest

ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
ALSA_PHRASES = {
    f"{a}_{b}.wav": f"{a.lower()} {b.lower()}"
    for a, b in [("Front", "Center"), ("Front", "Left"), ("Front", "Right"), ("Rear", "Center"),
                 ("Rear", "Left"), ("Rear", "Right"), ("Side", "Left"), ("Side", "Right")]
}  # fmt: skip
ALSA_SPEAKER = "alsa-utils"


def build_alsa_manifest(folder: str | Path = ALSA_SOUNDS, out: str | Path | None = None) -> list[Utterance]:
    """The eight phrases of an ``alsa-utils`` sound folder as utterances (and a manifest when ``out`` is given).

    Raises :class:`FileNotFoundError` for a missing folder and :class:`ManifestError` naming the phrase files
    that are absent or unreadable, so a partial copy is not scored as if it were the whole set.
    """
    import soundfile as sf

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"alsa-utils sound folder not found: {root} (apt-get install alsa-utils)")
    missing = [name for name in ALSA_PHRASES if not (root / name).is_file()]
    if missing:
        raise ManifestError(f"{root}: expected the 8 alsa-utils phrase recordings; missing {missing}")
    utts = []
    for name, text in ALSA_PHRASES.items():
        path = root / name
        try:
            info = sf.info(str(path))
        except (RuntimeError, sf.LibsndfileError) as err:
            raise ManifestError(f"{path}: expected a WAV recording of {text!r}: {err}") from None
        utts.append(Utterance(str(path), text, info.frames / info.samplerate, ALSA_SPEAKER))
    if out is not None:
        write_manifest(utts, out)
    return utts
