"""polyhead-speech end to end on the committed sample: fit, test (metrics.json), transcribe a stereo 44.1 kHz
file, the explanation report, and bad manifest lines / audio skipped and counted with skip_bad."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from polyhead.speech.cli import main
from polyhead.speech.inference import explain_main, transcribe_main

SAMPLE = Path(__file__).parents[2] / "shared" / "speech"
TINY = ["--model.d_model", "48", "--model.encoder_layers", "1", "--model.decoder_layers", "1",
        "--model.heads", "4", "--run.wandb", "offline", "--data.batch_size", "8"]  # fmt: skip


def _manifests(tmp_path: Path, extra_train_lines: list[str] = ()) -> list[str]:
    out = []
    for split in ("train", "dev", "test"):
        lines = [json.loads(x) for x in (SAMPLE / f"{split}.jsonl").read_text().splitlines()]
        for rec in lines:
            rec["audio_filepath"] = str(SAMPLE / rec["audio_filepath"])
        text = "".join(json.dumps(r) + "\n" for r in lines)
        if split == "train":
            text += "".join(x + "\n" for x in extra_train_lines)
        (tmp_path / f"{split}.jsonl").write_text(text)
        out += [f"--data.{split}_manifest", str(tmp_path / f"{split}.jsonl")]
    return out


@pytest.mark.slow
def test_fit_test_transcribe_explain(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00")
    bad = [
        "{broken json",
        json.dumps(
            {"audio_filepath": str(tmp_path / "broken.wav"), "text": "a broken file", "duration": 1.0}
        ),
        json.dumps(
            {
                "audio_filepath": str(SAMPLE / "audio" / "utt000000.flac"),
                "text": "costs 5 euros",
                "duration": 2.3,
            }
        ),
    ]
    data = _manifests(tmp_path, bad)
    common = ["--run.root", str(tmp_path / "runs"), *data, *TINY, "--data.skip_bad", "true"]
    main(["fit", *common, "--trainer.max_epochs", "1"])
    out = capsys.readouterr().out
    assert "skipped 2 utterances" in out  # the JSON line and the text with digits; the bad audio later
    main(["test", *common])
    run = tmp_path / "runs" / "speech" / "default" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert {"test/wer", "test/cer"} <= set(metrics) and metrics["test/cer"] >= 0
    assert (run / "tokenizer.json").is_file() and list((run / "wandb").glob("offline-run-*"))

    d, sr = sf.read(SAMPLE / "audio" / "utt000003.flac", dtype="float32")
    stereo = np.stack([d, 0.5 * d], 1)
    sf.write(tmp_path / "st.wav", np.repeat(stereo, 2, axis=0)[: len(d) * 2], 32000)  # 32 kHz stereo
    assert (
        transcribe_main(
            [str(run), str(tmp_path / "st.wav"), "--out", str(tmp_path / "t.jsonl"), "--decoding", "greedy"]
        )
        == 0
    )
    rec = json.loads((tmp_path / "t.jsonl").read_text())
    assert set(rec) >= {"text", "words", "words_attention", "real_time_factor"}
    assert all(w["start"] <= w["end"] for w in rec["words"])

    # predict on the same 32 kHz stereo file, and on a manifest line: the same transcript either way
    pred = ["predict", "--run.root", str(tmp_path / "runs"), *TINY, "--model.decoding", "greedy"]
    main([*pred, "--data.predict_audio", f"[{tmp_path / 'st.wav'}]"])
    rows = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    assert [r["audio_filepath"] for r in rows] == [str(tmp_path / "st.wav")]
    assert rows[0]["text"] == rec["text"] and set(rows[0]) == {"audio_filepath", "text", "words"}
    assert [w["word"] for w in rows[0]["words"]] == [w["word"] for w in rec["words"]]
    with pytest.raises(SystemExit):
        main([*pred, "--data.predict_audio", f"[{tmp_path / 'missing.wav'}]"])
    assert "missing.wav" in capsys.readouterr().err

    explain = [str(run), "--manifest", str(tmp_path / "test.jsonl"), "--utterances", "1", "--masks", "16"]
    assert explain_main([*explain, "--heads", "0", "3"]) == 0
    summary = json.loads((run / "explain.json").read_text())["summary"]
    assert len(summary["input"]["per_layer"]) == 1 and set(summary["deletion_auc"]) == {
        "attention",
        "saliency",
        "random",
    }
    assert set(summary["input"]["subset"]) == {"pearson", "spearman"}
    assert "| subset (layers all, heads [0, 3]) |" in (run / "explain.md").read_text()
    assert list((run / "media").glob("explain_*.png"))
    maps = np.load(run / "explain_maps" / "utt0000.npz")
    U = len(maps["tokens"]) + 1  # generated tokens + end symbol
    assert maps["cross_attention"].shape[:3] == (1, 4, U)  # (layers, heads, U + 1, T')
    assert (
        maps["input_saliency"].shape
        == maps["encoder_saliency"].shape
        == (U, maps["cross_attention"].shape[3])
    )
    np.testing.assert_allclose(maps["cross_attention"].sum(-1), 1.0, atol=1e-4)  # softmax over frames
    assert explain_main([*explain, "--heads", "4"]) == 2
    assert "--heads [4]: the model has 4" in capsys.readouterr().err
    bad_device = [str(run), "--manifest", str(tmp_path / "test.jsonl"), "--device", "no-such-device"]
    assert explain_main(bad_device) == 2
    assert "no-such-device" in capsys.readouterr().err


def test_real_data_paths_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--run.root", str(tmp_path), "--data.train_manifest", str(tmp_path / "nope.jsonl")])
    assert "real data needs all of" in capsys.readouterr().err
