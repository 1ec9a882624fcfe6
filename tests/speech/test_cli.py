"""polyhead-speech end to end on the committed sample: fit, then test/predict/transcribe/explain on other
manifests with the run's own tokenizer and settings, every record counted as scored or skipped by reason,
one-line errors with exit code 2, and the help without heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from polyhead.speech.cli import main
from polyhead.speech.inference import explain_main, transcribe_main

SAMPLE = Path(__file__).parents[2] / "shared" / "speech"
TINY = ["--model.d_model", "48", "--model.encoder_layers", "1", "--model.decoder_layers", "1",
        "--model.heads", "4", "--run.wandb", "offline", "--data.batch_size", "8"]  # fmt: skip


def _records(split: str) -> list[dict]:
    recs = [json.loads(x) for x in (SAMPLE / f"{split}.jsonl").read_text().splitlines()]
    for r in recs:
        r["audio_filepath"] = str(SAMPLE / r["audio_filepath"])
    return recs


def _write(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


@pytest.mark.slow
def test_fit_then_other_manifests(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00")
    train = _write(tmp_path / "train.jsonl", [*_records("train"), "{broken json"])
    dev = _write(tmp_path / "dev.jsonl", _records("dev"))
    runs = ["--run.root", str(tmp_path / "runs")]
    main(["fit", *runs, "--data.train_manifest", str(train), "--data.dev_manifest", str(dev), *TINY,
          "--data.skip_bad", "true", "--trainer.max_epochs", "1"])  # fmt: skip
    assert "skipped 1 of 33 records while reading (1 invalid JSON)" in capsys.readouterr().out
    run = tmp_path / "runs" / "speech" / "default" / "version_0"
    settings = json.loads((run / "speech_settings.json").read_text())
    assert settings["features"]["n_mels"] == 80 and settings["tokenizer"]["normalizer"] == {
        "language": "en", "numbers": "spell"}  # fmt: skip
    pieces = settings["tokenizer"]["pieces"]
    assert "'" in pieces and set("abcdefghijklmnopqrstuvwxyz") <= set(pieces)

    # a manifest in another alphabet: upper case, punctuation, apostrophes, digits, accents, Greek, bad lines
    test = _records("test")
    other = [
        {**test[0], "text": test[0]["text"].upper() + "!"},
        {**test[1], "text": "Don't, it's 42 café-style"},
        {**test[2], "text": "λόγος and more"},  # not in the run's alphabet
        {**test[3], "audio_filepath": str(tmp_path / "broken.wav")},
        {**test[3], "audio_filepath": str(tmp_path / "missing.flac")},
        "{not json",
        {"audio_filepath": test[0]["audio_filepath"], "text": "no duration"},
    ]
    manifest = _write(tmp_path / "other.jsonl", other)
    code = _exit_code(lambda: main(["test", *runs, "--data.test_manifest", str(manifest)]))
    err = capsys.readouterr().err  # reading comes first: the invalid JSON line stops it
    assert code == 2 and "other.jsonl:6: expected a JSON object" in err and "Traceback" not in err
    greek = _write(tmp_path / "greek.jsonl", other[:3])
    assert _exit_code(lambda: main(["test", *runs, "--data.test_manifest", str(greek)])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "greek.jsonl:3: characters outside the tokenizer: ['γ', 'λ', 'ο', 'ς']" in err[-1]
    main(["test", *runs, "--data.test_manifest", str(manifest), "--data.skip_bad", "true",
          "--model.decoding", "greedy"])  # fmt: skip
    out = capsys.readouterr().out
    assert f"{manifest}: 7 records, scored 2, skipped 5" in out
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert metrics["test/utterances_total"] == 7 and metrics["test/utterances_scored"] == 2
    assert {k: v for k, v in metrics.items() if k.startswith("test/skipped/")} == {
        "test/skipped/characters_outside_the_tokenizer": 1, "test/skipped/unreadable_audio": 1,
        "test/skipped/missing_audio_file": 1, "test/skipped/invalid_json": 1, "test/skipped/missing_fields": 1}  # fmt: skip
    assert metrics["test/skipped_total"] == 5 and metrics["test/cer"] >= 0

    # the scored pair, scored by hand from transcribe's output (same checkpoint tokenizer): same WER
    pair = _write(tmp_path / "pair.jsonl", other[:2])
    assert (
        transcribe_main([str(run), str(pair), "--out", str(tmp_path / "t.jsonl"), "--decoding", "greedy"])
        == 0
    )
    hyps = [json.loads(x)["text"] for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    import torchmetrics

    from polyhead.speech.data.normalize import TextNormalizer

    refs = [TextNormalizer()(r["text"]) for r in other[:2]]
    assert refs[1] == "don't it's forty two cafe style"
    main(["test", *runs, "--data.test_manifest", str(pair), "--model.decoding", "greedy"])
    wer = json.loads((run / "metrics.json").read_text())["metrics"]["test/wer"]
    assert wer == pytest.approx(float(torchmetrics.functional.word_error_rate(hyps, refs)), abs=1e-6)

    # transcribe: a failing file makes the exit code 1, the others are still written (MP3 and 32 kHz stereo)
    d, _ = sf.read(test[3]["audio_filepath"], dtype="float32")
    sf.write(tmp_path / "st.wav", np.repeat(np.stack([d, 0.5 * d], 1), 2, axis=0), 32000)
    sf.write(tmp_path / "clip.mp3", d, 16000, format="MP3")
    files = [str(tmp_path / "st.wav"), str(tmp_path / "clip.mp3"), str(tmp_path / "missing.flac")]
    assert (
        transcribe_main([str(run), *files, "--out", str(tmp_path / "t2.jsonl"), "--decoding", "greedy"]) == 1
    )
    err = capsys.readouterr().err
    assert "missing.flac: no such audio file" in err and "3 files, transcribed 2" in err
    recs = [json.loads(x) for x in (tmp_path / "t2.jsonl").read_text().splitlines()]
    assert [r["audio_filepath"] for r in recs] == files[:2]
    assert all(w["start"] <= w["end"] for r in recs for w in r["words"])

    # predict: every input written or counted
    main(["predict", *runs, *TINY, "--model.decoding", "greedy", "--data.skip_bad", "true",
          "--data.predict_audio", f"[{files[0]}, {files[1]}, {files[2]}]"])  # fmt: skip
    assert (
        "data.predict_audio: 3 records, transcribed 2, skipped 1 (1 missing audio file)"
        in capsys.readouterr().out
    )
    rows = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    assert [r["audio_filepath"] for r in rows] == files[:2] and rows[0]["text"] == recs[0]["text"]
    summary = json.loads((run / "predictions.summary.json").read_text())
    assert summary == {"utterances_total": 3, "utterances_scored": 2, "skipped_total": 1,
                       "skipped/missing_audio_file": 1}  # fmt: skip
    assert _exit_code(lambda: main(["predict", *runs, "--data.predict_audio", f"[{files[2]}]"])) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # (Lightning's INFO lines come before it)
    assert "data.predict_audio[0]" in last and "missing.flac" in last and "Traceback" not in err

    # explain: the manifest line of a bad file, reports into --out or a new folder each time
    broken = _write(tmp_path / "broken.jsonl", other[:4])
    assert explain_main([str(run), "--manifest", str(broken)]) == 2
    assert "broken.jsonl:4: " in capsys.readouterr().err
    explain = [
        str(run),
        "--manifest",
        str(pair),
        "--utterances",
        "1",
        "--masks",
        "16",
        "--decoding",
        "greedy",
    ]
    assert explain_main([*explain, "--heads", "0", "3", "--out", str(tmp_path / "ex")]) == 0
    report = json.loads((tmp_path / "ex" / "explain.json").read_text())
    assert (
        report["utterances"][0]["text"] == hyps[0] and report["utterances"][0]["manifest_line"] == f"{pair}:1"
    )
    assert "| subset (layers all, heads [0, 3]) |" in (tmp_path / "ex" / "explain.md").read_text()
    maps = np.load(tmp_path / "ex" / "explain_maps" / "utt0000.npz")
    U = len(maps["tokens"]) + 1  # generated tokens + end symbol
    assert maps["cross_attention"].shape[:3] == (1, 4, U)
    np.testing.assert_allclose(maps["cross_attention"].sum(-1), 1.0, atol=1e-4)  # softmax over frames
    if hyps[0]:
        assert explain_main(explain) == 0 and explain_main(explain) == 0
        assert (run / "explain_0" / "explain.md").is_file() and (run / "explain_1" / "explain.md").is_file()
    assert explain_main([*explain, "--heads", "4"]) == 2
    assert "--heads [4]: the model has 4" in capsys.readouterr().err


def _exit_code(fn) -> int:
    try:
        fn()
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_config_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        _exit_code(
            lambda: main(
                ["fit", "--run.root", str(tmp_path), "--data.train_manifest", str(tmp_path / "x.jsonl")]
            )
        )
        == 2
    )
    assert "needs both data.train_manifest and data.dev_manifest" in capsys.readouterr().err
    assert _exit_code(lambda: main(["nonsense"])) == 2
    assert "unknown subcommand 'nonsense'" in capsys.readouterr().err
    assert transcribe_main([str(tmp_path), "a.wav"]) == 2
    assert "no checkpoint under checkpoints/" in capsys.readouterr().err


def test_help_lists_every_subcommand_without_heavy_imports() -> None:
    code = ("import sys; from polyhead.speech.cli import main; main(['--help']); "
            "print(sorted(m for m in ('torch', 'lightning', 'wandb', 'torchaudio') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for sub in ("fit", "validate", "test", "predict", "transcribe", "explain", "manifest", "synthesize"):
        assert f"  {sub} " in out
    assert out.strip().splitlines()[-1] == "[]"


def test_transcribe_path_does_not_import_lightning() -> None:
    # start-up: transcribe/explain need torch and the model, not Lightning, W&B or matplotlib
    code = ("import sys; import polyhead.speech.inference; "
            "print(sorted(m for m in ('lightning', 'wandb', 'matplotlib', 'polyhead.train') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
