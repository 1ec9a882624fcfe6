"""Inference from a checkpoint: transcription with word timestamps, and the explanation report.

    polyhead-speech transcribe RUN_OR_CKPT a.wav b.mp3 --out out.jsonl [--decoding joint]
    polyhead-speech transcribe RUN_OR_CKPT manifest.jsonl
    polyhead-speech explain RUN_OR_CKPT --manifest test.jsonl [--utterances 8] [--out DIR]

``RUN_OR_CKPT`` is a checkpoint or a run directory (its best checkpoint). The run's tokenizer, text
normaliser and feature settings come from the checkpoint (:mod:`polyhead.speech.run_settings`), which is
read with ``weights_only=True``. Audio of any format libsndfile reads (WAV, FLAC, OGG, MP3, ...), sample
rate and channel count is downmixed and resampled to the run's rate. Word timestamps come from CTC forced
alignment of the hypothesis; the attention-DTW timestamps and their disagreement are reported as well.
``transcribe`` writes every file it can and exits 1 if any file failed (each failure one line on stderr).

The explanation report explains the hypothesis ``transcribe`` gives with the same ``--decoding``: it
compares the decoder's cross-attention for those tokens with SPES-like saliency (input and encoder
output) and writes ``explain.json``, ``explain.md``, ``media/explain_*.png`` and ``explain_maps/utt*.npz``
(per utterance: tokens, cross-attention per layer and head per token, both saliency maps) into ``--out``
(default: a new ``explain_<n>/`` folder in the run directory, so earlier reports are kept), and logs them
to the run's W&B (offline unless W&B is configured online).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyhead.speech.data.audio import load_audio
from polyhead.speech.data.errors import SpeechDataError
from polyhead.speech.data.manifest import read_manifest
from polyhead.speech.data.tokenizer import Tokenizer
from polyhead.speech.decoding import attention_beam_search, ctc_beam_search, greedy_ctc, joint_decode
from polyhead.speech.explain import (
    SUBSAMPLING,
    aggregate,
    compare,
    cross_attention,
    ctc_timestamps,
    deletion_aucs,
    dtw_timestamps,
    encoder_saliency,
    pool_to_encoder,
    spes_saliency,
    timestamp_disagreement,
)
from polyhead.speech.models import ASRModel
from polyhead.speech.run_settings import SpeechSettings, load_checkpoint, settings_from_checkpoint

DECODINGS = ("greedy", "ctc_beam", "attention", "joint")
CHECKPOINT_DIR = "checkpoints"  # polyhead.train.rundir's layout; not imported: it would load Lightning


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory's best checkpoint (else its ``last.ckpt``)."""
    p = Path(path)
    if p.is_dir():
        best = sorted((p / CHECKPOINT_DIR).glob("best*.ckpt"), key=lambda f: f.stat().st_mtime)
        last = p / CHECKPOINT_DIR / "last.ckpt"
        if best or last.is_file():
            return best[-1] if best else last
        raise SpeechDataError(
            f"{p}: no checkpoint under {CHECKPOINT_DIR}/ (is it a run directory?)",
            reason="missing checkpoint",
        )
    if not p.is_file():
        raise SpeechDataError(f"checkpoint not found: {p}", reason="missing checkpoint")
    return p


def run_dir_of(ckpt: Path) -> Path:
    ckpt = ckpt.resolve()
    return ckpt.parent.parent if ckpt.parent.name == CHECKPOINT_DIR else ckpt.parent


def load_model(path: str | Path) -> tuple[ASRModel, SpeechSettings, dict[str, Any], Path]:
    """``(model in eval mode, run settings, hyper-parameters, checkpoint path)``; never runs code from the file."""
    ckpt_path = resolve_checkpoint(path)
    ckpt = load_checkpoint(ckpt_path)
    settings = settings_from_checkpoint(ckpt, ckpt_path)
    hp = dict(ckpt.get("hyper_parameters") or {})
    try:
        model = ASRModel(len(settings.tokenizer), n_mels=settings.n_mels, d_model=hp["d_model"],
                         encoder_layers=hp["encoder_layers"], decoder_layers=hp["decoder_layers"], heads=hp["heads"],
                         conv_kernel=hp["conv_kernel"], dropout=hp["dropout"], attention=hp["attention"],
                         decoder_attention=hp.get("decoder_attention"))  # fmt: skip
        state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
        model.load_state_dict(state)
    except (KeyError, RuntimeError) as err:
        raise SpeechDataError(
            f"{ckpt_path}: model does not match its hyper-parameters ({type(err).__name__}: "
            f"{str(err).splitlines()[0]})",
            reason="bad checkpoint",
        ) from None
    return model.eval(), settings, hp, ckpt_path


@torch.no_grad()
def decode(
    model: ASRModel,
    tok: Tokenizer,
    feats: torch.Tensor,
    *,
    decoding: str = "joint",
    beam_size: int = 8,
    ctc_weight: float = 0.3,
) -> tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]:
    """One utterance ``feats (1, T, F)`` -> (tokens, CTC log-probs ``(T', V)``, encoder out, its mask)."""
    lengths = torch.tensor([feats.shape[1]], device=feats.device)
    enc, enc_len, mask = model.encode(feats, lengths)
    lp = model.ctc_log_probs(enc)
    n = int(enc_len[0])
    if decoding == "greedy":
        tokens = greedy_ctc(lp, enc_len)[0]
    elif decoding == "ctc_beam":
        tokens = ctc_beam_search(lp, enc_len, tok, beam_size)[0]
    elif decoding == "joint":
        tokens = joint_decode(
            model, enc[:, :n], mask[:, :n], lp[0], n, tok, beam_size=beam_size, ctc_weight=ctc_weight
        )[0].tokens
    elif decoding == "attention":
        tokens = attention_beam_search(
            model, enc[:, :n], mask[:, :n], beam_size=beam_size, max_len=max(8, n)
        )[0].tokens
    else:
        raise ValueError(f"decoding must be one of {DECODINGS}, got {decoding!r}")
    return tokens, lp[0, :n], enc[:, :n], mask[:, :n]


@torch.no_grad()
def transcribe(
    model: ASRModel,
    settings: SpeechSettings,
    wav: torch.Tensor,
    *,
    decoding: str = "joint",
    beam_size: int = 8,
    ctc_weight: float = 0.3,
) -> dict[str, Any]:
    """Text, CTC and attention word timestamps and their disagreement for ``wav`` at the run's sample rate."""
    tok = settings.tokenizer
    feats = settings.fbank()(wav)[None]
    tokens, lp, _, _ = decode(
        model, tok, feats, decoding=decoding, beam_size=beam_size, ctc_weight=ctc_weight
    )
    words = ctc_timestamps(lp, tokens, tok) if tokens else []
    att_words = (
        dtw_timestamps(aggregate(cross_attention(model, feats, tokens)[-1:]), tokens, tok) if tokens else []
    )
    return {
        "text": tok.decode(tokens),
        "words": words,
        "words_attention": att_words,
        "timestamp_disagreement_ms": timestamp_disagreement(words, att_words),
        "duration": wav.numel() / settings.sample_rate,
    }


def transcribe_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="polyhead-speech transcribe", description="Transcribe audio files.")
    p.add_argument("checkpoint", help="checkpoint or run directory")
    p.add_argument(
        "audio", nargs="+", type=Path, help="audio files (WAV, FLAC, OGG, MP3, ...), or one .jsonl manifest"
    )
    p.add_argument("--out", type=Path, default=None, help="JSON lines output (default: stdout)")
    p.add_argument("--decoding", choices=DECODINGS, default="joint")
    p.add_argument("--beam-size", type=int, default=8)
    a = p.parse_args(argv)
    try:
        model, settings, hp, _ = load_model(a.checkpoint)
        if a.audio[0].suffix == ".jsonl":
            files = [(Path(u.audio_filepath), u.where()) for u in read_manifest(a.audio[0])]
        else:
            files = [(f, str(f)) for f in a.audio]
    except SpeechDataError as err:
        print(f"polyhead-speech transcribe: error: {err}", file=sys.stderr)
        return 2
    failed, lines = [], []
    for f, where in files:
        try:
            wav = load_audio(f, settings.sample_rate)
        except SpeechDataError as err:
            msg = str(err) if where == str(f) else f"{where}: {err}"
            print(f"polyhead-speech transcribe: failed: {msg}", file=sys.stderr)
            failed.append(err.reason)
            continue
        t0 = time.perf_counter()
        rec = transcribe(model, settings, wav, decoding=a.decoding, beam_size=a.beam_size,
                         ctc_weight=hp.get("ctc_weight", 0.3))  # fmt: skip
        rec["real_time_factor"] = (time.perf_counter() - t0) / max(rec["duration"], 1e-6)
        line = json.dumps({"audio_filepath": str(f), **rec})
        lines.append(line)
        if a.out is None:
            print(line, flush=True)
    if a.out is not None:
        a.out.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    where = f" to {a.out}" if a.out is not None else ""
    print(f"polyhead-speech transcribe: {len(files)} files, transcribed {len(lines)}{where}, failed {len(failed)}",
          file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


# ---- explanation report ------------------------------------------------------------------------------------


def explain_utterance(
    model: ASRModel,
    settings: SpeechSettings,
    wav: torch.Tensor,
    *,
    decoding: str = "joint",
    beam_size: int = 8,
    ctc_weight: float = 0.3,
    n_masks: int = 128,
    chunk: int = 64,
    layers: list[int] | None = None,
    heads: list[int] | None = None,
) -> dict[str, Any]:
    """Cross-attention vs input/encoder saliency and deletion AUC for one utterance, on ``model``'s device.

    The explained tokens are the hypothesis of ``decoding`` (what ``transcribe`` shows with the same
    options). ``chunk`` perturbed copies go through the model per forward pass (more is faster on a GPU);
    ``layers`` / ``heads`` add a row for the mean over that subset of the decoder's cross-attention."""
    device = next(model.parameters()).device
    tok = settings.tokenizer
    feats = settings.fbank()(wav)[None].to(device)
    tokens, _, _, _ = decode(model, tok, feats, decoding=decoding, beam_size=beam_size, ctc_weight=ctc_weight)
    if not tokens:
        return {}
    att = cross_attention(model, feats, tokens).float().cpu()  # (layers, heads, U + 1, T')
    sal_in = spes_saliency(model, feats, tokens, n_masks=n_masks, chunk=chunk)  # (U + 1, T, F)
    sal_enc = encoder_saliency(model, feats, tokens, n_masks=n_masks, chunk=chunk)  # (U + 1, T')
    pooled = pool_to_encoder(sal_in, att.shape[-1])
    frame_att = aggregate(att)[:-1].sum(0).repeat_interleave(SUBSAMPLING)[: feats.shape[1]]
    frame_att = torch.nn.functional.pad(frame_att, (0, feats.shape[1] - frame_att.numel()))
    frame_sal = sal_in[:-1].sum((0, 2))
    return {
        "text": tok.decode(tokens),
        "decoding": decoding,
        "tokens": len(tokens),
        "input": compare(att, pooled, layers=layers, heads=heads),
        "encoder": compare(att, sal_enc, layers=layers, heads=heads),
        "deletion_auc": deletion_aucs(model, feats, tokens, {"attention": frame_att, "saliency": frame_sal}),
        "_maps": (feats[0].cpu(), att, pooled, sal_enc, tokens),
    }


def _mean_stats(items: list[dict]) -> dict[str, float]:
    return {k: float(torch.tensor([i[k] for i in items]).nanmean()) for k in ("pearson", "spearman")}


def summarise(results: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for where in ("input", "encoder"):
        L = len(results[0][where]["per_layer"])
        H = len(results[0][where]["per_layer_head"][0])
        out[where] = {
            "per_layer_head": [
                [_mean_stats([r[where]["per_layer_head"][i][h] for r in results]) for h in range(H)]
                for i in range(L)
            ],
            "per_layer": [_mean_stats([r[where]["per_layer"][i] for r in results]) for i in range(L)],
            "aggregated": _mean_stats([r[where]["aggregated"] for r in results]),
        }
        if "subset" in results[0][where]:
            out[where]["subset"] = _mean_stats([r[where]["subset"] for r in results])
    out["deletion_auc"] = {
        k: float(torch.tensor([r["deletion_auc"][k] for r in results]).mean())
        for k in results[0]["deletion_auc"]
    }
    return out


def report_markdown(summary: dict[str, Any], n: int) -> str:
    lines = [f"# Cross-attention vs saliency ({n} utterances)", "",
             "| layer | input Pearson | input Spearman | encoder Pearson | encoder Spearman |", "|---|---|---|---|---|"]  # fmt: skip
    for i, (a, b) in enumerate(zip(summary["input"]["per_layer"], summary["encoder"]["per_layer"])):
        lines.append(
            f"| {i} (heads mean) | {a['pearson']:.3f} | {a['spearman']:.3f} | {b['pearson']:.3f} | {b['spearman']:.3f} |"
        )
    rows = [("all (aggregated)", "aggregated")]
    if "subset" in summary["input"]:
        rows.append((f"subset {summary.get('subset_label', '')}".strip(), "subset"))
    for label, key in rows:
        a, b = summary["input"][key], summary["encoder"][key]
        lines.append(
            f"| {label} | {a['pearson']:.3f} | {a['spearman']:.3f} | {b['pearson']:.3f} | {b['spearman']:.3f} |"
        )
    lines += ["", "Per head (input Pearson):", "", "| layer | " + " | ".join(f"head {h}" for h in range(len(summary["input"]["per_layer_head"][0]))) + " |",
              "|---|" + "---|" * len(summary["input"]["per_layer_head"][0])]  # fmt: skip
    for i, row in enumerate(summary["input"]["per_layer_head"]):
        lines.append(f"| {i} | " + " | ".join(f"{c['pearson']:.3f}" for c in row) + " |")
    d = summary["deletion_auc"]
    lines += ["", "Deletion AUC (mean token probability as input frames are deleted, most relevant first; lower = more faithful):",
              "", "| ranking | AUC |", "|---|---|", *(f"| {k} | {v:.4f} |" for k, v in d.items())]  # fmt: skip
    return "\n".join(lines) + "\n"


def _figure(feats: torch.Tensor, att: torch.Tensor, sal: torch.Tensor, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(3, 1, figsize=(10, 8), constrained_layout=True)
    ax[0].imshow(feats.T.numpy(), aspect="auto", origin="lower")
    ax[0].set_title(f"log-mel input: {title}")
    ax[1].imshow(att[:-1].numpy(), aspect="auto", cmap="magma")
    ax[1].set_title("cross-attention (all layers and heads), tokens x encoder frames")
    ax[2].imshow(sal[:-1].numpy(), aspect="auto", cmap="magma")
    ax[2].set_title("SPES saliency pooled to encoder frames, tokens x encoder frames")
    return fig


def _new_report_dir(run_dir: Path) -> Path:
    n = 0
    while (run_dir / f"explain_{n}").exists():
        n += 1
    return run_dir / f"explain_{n}"


def explain_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="polyhead-speech explain", description="Cross-attention vs saliency report."
    )
    p.add_argument("checkpoint", help="checkpoint or run directory")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: a new explain_<n>/ in the run directory)")  # fmt: skip
    p.add_argument("--utterances", type=int, default=8)
    p.add_argument("--decoding", choices=DECODINGS, default="joint", help="the hypothesis to explain")
    p.add_argument("--beam-size", type=int, default=8)
    p.add_argument("--masks", type=int, default=128)
    p.add_argument("--chunk", type=int, default=64, help="perturbed copies per forward pass")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="decoder layers of the subset row")
    p.add_argument("--heads", type=int, nargs="+", default=None, help="heads of the subset row")
    a = p.parse_args(argv)
    try:
        model, settings, hp, ckpt = load_model(a.checkpoint)
        model = model.to(torch.device(a.device))
        n_layers, n_heads = len(model.decoder), model.num_heads
        for name, picked, n in (("--layers", a.layers, n_layers), ("--heads", a.heads, n_heads)):
            if picked is not None and not all(0 <= i < n for i in picked):
                raise ValueError(f"{name} {picked}: the model has {n} (indices 0..{n - 1})")
        utts = read_manifest(a.manifest)[: a.utterances]
        # every audio file is read before the (slow) saliency starts: a bad one names its manifest line
        wavs = []
        for u in utts:
            try:
                wavs.append(load_audio(u.audio_filepath, settings.sample_rate))
            except SpeechDataError as err:
                raise SpeechDataError(f"{u.where()}: {err}", reason=err.reason) from None
    except (SpeechDataError, ValueError, RuntimeError) as err:
        print(f"polyhead-speech explain: error: {err}", file=sys.stderr)
        return 2
    out_dir = a.out if a.out is not None else _new_report_dir(run_dir_of(ckpt))
    results, t0 = [], time.perf_counter()
    (out_dir / "media").mkdir(parents=True, exist_ok=True)
    (out_dir / "explain_maps").mkdir(exist_ok=True)
    figs = []
    for k, (u, wav) in enumerate(zip(utts, wavs)):
        r = explain_utterance(model, settings, wav, decoding=a.decoding, beam_size=a.beam_size,
                              ctc_weight=hp.get("ctc_weight", 0.3), n_masks=a.masks, chunk=a.chunk,
                              layers=a.layers, heads=a.heads)  # fmt: skip
        if not r:
            print(
                f"polyhead-speech explain: {u.where()}: empty hypothesis, nothing to explain", file=sys.stderr
            )
            continue
        feats, att, pooled, sal_enc, tokens = r.pop("_maps")
        # per generated token (and the end symbol): cross-attention of every layer and head, both saliencies
        np.savez_compressed(
            out_dir / "explain_maps" / f"utt{k:04d}.npz",
            audio_filepath=u.audio_filepath,
            text=r["text"],
            tokens=np.array(tokens),
            cross_attention=att.numpy(),  # (layers, heads, U + 1, T')
            input_saliency=pooled.numpy(),  # (U + 1, T'), pooled from (U + 1, T, F)
            encoder_saliency=sal_enc.numpy(),  # (U + 1, T')
        )
        r["audio_filepath"], r["manifest_line"] = u.audio_filepath, u.where()
        if k < 2:
            fig = _figure(feats, aggregate(att), pooled, r["text"])
            path = out_dir / "media" / f"explain_{k}.png"
            fig.savefig(path, dpi=80)
            figs.append(path)
        results.append(r)
    if not results:
        print("polyhead-speech explain: no utterance produced tokens", file=sys.stderr)
        return 1
    summary = summarise(results)
    summary["decoding"] = a.decoding
    if a.layers is not None or a.heads is not None:
        summary["subset_label"] = f"(layers {a.layers or 'all'}, heads {a.heads or 'all'})"
    summary["seconds_per_utterance"] = (time.perf_counter() - t0) / len(results)
    md = report_markdown(summary, len(results))
    (out_dir / "explain.json").write_text(json.dumps({"summary": summary, "utterances": results}, indent=1))
    (out_dir / "explain.md").write_text(md)
    _log_wandb(run_dir_of(ckpt), summary, figs)
    print(md)
    print(f"seconds per utterance: {summary['seconds_per_utterance']:.1f}; wrote {out_dir / 'explain.md'}")
    return 0


def _log_wandb(run_dir: Path, summary: dict[str, Any], figs: list[Path]) -> None:
    id_file = run_dir / "wandb_id"
    if not id_file.is_file():
        return
    import wandb

    run = wandb.init(dir=str(run_dir), id=id_file.read_text().strip(), resume="allow", mode="offline",
                     project="polyhead-speech", settings=wandb.Settings(console="off", x_disable_stats=True, silent=True))  # fmt: skip
    run.log({f"explain/{p.stem}": wandb.Image(str(p)) for p in figs})
    run.summary.update({
        "explain/input_pearson": summary["input"]["aggregated"]["pearson"],
        "explain/encoder_pearson": summary["encoder"]["aggregated"]["pearson"],
        **{f"explain/deletion_auc_{k}": v for k, v in summary["deletion_auc"].items()},
    })  # fmt: skip
    run.finish()
