"""Common Voice: a release's language folder (TSVs with a header, MP3 clips, clip_durations.tsv) is read
with its own columns and splits, bad rows named by TSV line or counted, and it trains and scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from polyhead.speech.data.common_voice import build_common_voice_manifest, read_common_voice
from polyhead.speech.data.manifest import ManifestError, SkipReport, read_manifest

SAMPLE = Path(__file__).parents[2] / "shared" / "speech"
HEADER = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"


def make_release(
    root: Path, *, splits: dict[str, int], extra_rows: dict[str, list[str]] | None = None
) -> Path:
    """A Common Voice-layout folder from the committed sample: MP3 clips, TSVs, clip_durations.tsv."""
    recs = [
        json.loads(x)
        for s in ("train", "dev", "test")
        for x in (SAMPLE / f"{s}.jsonl").read_text().splitlines()
    ]
    (root / "clips").mkdir(parents=True)
    durations, k = ["clip\tduration[ms]"], 0
    for split, n in splits.items():
        rows = [HEADER]
        for r in recs[k : k + n]:
            k += 1
            data, sr = sf.read(SAMPLE / r["audio_filepath"], dtype="float32")
            clip = f"common_voice_en_{k:05d}.mp3"
            sf.write(root / "clips" / clip, data, sr, format="MP3")
            # Common Voice prompts are written text: capitals, punctuation, curly apostrophes
            sentence = r["text"].capitalize().replace(" is ", " is’nt ") + "."
            rows.append(f"spk{k % 5:02d}hash\t{clip}\tsid{k}\t{sentence}\twiki\t2\t0\t\t\t\t\ten\t")
            durations.append(f"{clip}\t{round(len(data) / sr * 1000)}")
        rows += (extra_rows or {}).get(split, [])
        (root / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    (root / "clip_durations.tsv").write_text("\n".join(durations) + "\n")
    return root


def test_reader_columns_splits_and_bad_rows(tmp_path: Path) -> None:
    bad = ["spk\tmissing.mp3\tsid\tNo such clip.\twiki\t2\t0\t\t\t\t\ten\t", "spk\tcommon_voice_en_00001.mp3"]
    root = make_release(tmp_path / "en", splits={"train": 3, "test": 2}, extra_rows={"test": bad})
    train = read_common_voice(root, "train")
    assert [Path(u.audio_filepath).name for u in train] == [f"common_voice_en_0000{i}.mp3" for i in (1, 2, 3)]
    assert train[0].speaker == "spk01hash" and train[0].line == 2 and train[0].text.endswith(".")
    info = sf.info(train[0].audio_filepath)
    assert abs(train[0].duration - info.frames / info.samplerate) < 0.1  # clip_durations.tsv, in ms
    with pytest.raises(ManifestError, match=r"test.tsv:4: .*missing.mp3: no such audio file"):
        read_common_voice(root, "test")
    report = SkipReport()
    assert len(read_common_voice(root, "test", skip_bad=True, report=report)) == 2
    assert dict(report.skipped) == {"missing audio file": 1, "bad TSV row": 1}
    with pytest.raises(ManifestError, match=r"dev\.tsv: no such file"):
        read_common_voice(root, "dev")
    (root / "other.tsv").write_text("path\tsentence\nx.mp3\thi\n")
    with pytest.raises(
        ManifestError, match=r"other.tsv:1: header lacks the Common Voice columns \['client_id'\]"
    ):
        read_common_voice(root, "other")
    utts, _ = build_common_voice_manifest(root, tmp_path / "train.jsonl", split="train")
    assert [u.text for u in read_manifest(tmp_path / "train.jsonl")] == [u.text for u in utts]


@pytest.mark.slow
def test_common_voice_folder_trains_and_scores(tmp_path: Path) -> None:
    from polyhead.speech.cli import main

    root = make_release(tmp_path / "en", splits={"train": 24, "dev": 4, "test": 6})
    common = ["--run.root", str(tmp_path / "runs"), "--data.common_voice", str(root), "--run.wandb", "disabled",
              "--model.d_model", "48", "--model.encoder_layers", "1", "--model.decoder_layers", "1"]  # fmt: skip
    main(["fit", *common, "--trainer.max_epochs", "1", "--data.batch_size", "8"])
    main(["test", *common, "--model.decoding", "greedy"])
    run = tmp_path / "runs" / "speech" / "default" / "version_0"
    m = json.loads((run / "metrics.json").read_text())["metrics"]
    assert m["test/utterances_total"] == m["test/utterances_scored"] == 6 and m["test/skipped_total"] == 0
    assert m["test/cer"] >= 0 and "test/wer" in m
