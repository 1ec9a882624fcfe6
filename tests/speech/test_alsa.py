"""The alsa-utils recordings (one human speaker, 8 phrases): the manifest builder for that folder layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from polyhead.speech.cli import main
from polyhead.speech.data.alsa import ALSA_PHRASES, ALSA_SOUNDS, build_alsa_manifest
from polyhead.speech.data.manifest import ManifestError, read_manifest


def fake_alsa(folder: Path) -> dict[str, float]:
    folder.mkdir()
    rng, durations = np.random.default_rng(0), {}
    for i, name in enumerate([*ALSA_PHRASES, "Noise.wav"]):
        n = 4800 * (i + 2)
        sf.write(folder / name, rng.standard_normal(n).astype(np.float32) * 0.1, 48000)
        durations[name] = n / 48000
    return durations


def test_alsa_layout_gives_eight_phrases_from_file_names(tmp_path: Path) -> None:
    durations = fake_alsa(tmp_path / "alsa")
    utts = build_alsa_manifest(tmp_path / "alsa", tmp_path / "m.jsonl")
    assert [u.text for u in utts] == [
        "front center", "front left", "front right", "rear center",
        "rear left", "rear right", "side left", "side right",
    ]  # fmt: skip
    back = read_manifest(tmp_path / "m.jsonl")
    assert [Path(u.audio_filepath).name for u in back] == list(ALSA_PHRASES)  # Noise.wav left out
    assert [u.duration for u in back] == pytest.approx([durations[n] for n in ALSA_PHRASES])
    assert {u.speaker for u in back} == {"alsa-utils"}


def test_alsa_builder_names_missing_files_and_cli_exits_2(tmp_path: Path, capsys) -> None:
    fake_alsa(tmp_path / "alsa")
    (tmp_path / "alsa" / "Rear_Left.wav").unlink()
    with pytest.raises(ManifestError, match=r"Rear_Left\.wav"):
        build_alsa_manifest(tmp_path / "alsa")
    with pytest.raises(SystemExit) as exit_:
        main(["manifest", str(tmp_path / "alsa"), str(tmp_path / "m.jsonl"), "--alsa"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Rear_Left.wav" in err[0]
    with pytest.raises(FileNotFoundError, match="apt-get install alsa-utils"):
        build_alsa_manifest(tmp_path / "nowhere")


@pytest.mark.skipif(not ALSA_SOUNDS.is_dir(), reason="alsa-utils is not installed")
def test_the_installed_alsa_recordings(tmp_path: Path) -> None:
    main(["manifest", str(ALSA_SOUNDS), str(tmp_path / "alsa.jsonl"), "--alsa"])
    recs = [json.loads(line) for line in (tmp_path / "alsa.jsonl").read_text().splitlines()]
    assert len(recs) == 8 and all(1.0 < r["duration"] < 2.0 for r in recs)
    assert recs[0]["text"] == "front center" and recs[0]["audio_filepath"].endswith("Front_Center.wav")
