"""The face-restoration pipeline: render -> fit (RestoreFormer++ both stages, U-Net) -> test -> restore photos.

Every model is trained with the same budget (epochs x batches) on the same rendered (SYNTHETIC) faces
through the ``polyhead-face`` CLI and tested on held-out rendered faces degraded by the extending
degradation model (:func:`polyhead.train.experiment.fit_test`); the degraded input is scored on the same
test set in every run (``test/input_*``). ``run_quick`` is what ``polyhead demo`` runs: 32 px faces,
narrow models, one seed, then the in-the-wild example (``polyhead-face restore`` on the real photos in
``shared/face`` and ``shared/cslr`` when present). ``pipelines/face.py`` runs the same steps over several
seeds with a larger budget and writes the results table.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from polyhead.train.domains import AttentionSite, DemoRow, Domain

MODELS = ("restoreformer", "unet")
NAMES = {"restoreformer": "RestoreFormer++", "unet": "U-Net (no prior)", "degraded": "degraded input"}

# Quick mode: 32 px rendered faces and narrow widths (2-core CPU budget); the same settings as the README's
# results table (pipelines/face.py defaults).
QUICK_DATA = ["--data.num_train", "512", "--data.num_val", "32", "--data.num_test", "128"]
QUICK_MODEL = [
    "--model.resolution", "32", "--model.channels", "8", "--model.channel_mult", "[1, 2, 2]",
    "--model.z_dim", "32", "--model.num_codes", "128",
]  # fmt: skip
QUICK_EPOCHS, QUICK_STAGE1, QUICK_BATCHES = 4, 2, 16


def _repo_photos() -> list[Path]:
    """The real photos that ship with the repository (tests and the in-the-wild example)."""
    here = Path(__file__).resolve()
    for root in here.parents:
        shared = root / "shared"
        if (shared / "face").is_dir():
            return [
                p for p in (shared / "face" / "astronaut.jpg", shared / "cslr" / "messi5.jpg") if p.is_file()
            ]
    return []


def run_models(
    out_dir: Path,
    *,
    models: tuple[str, ...] = MODELS,
    seeds: tuple[int, ...] = (0,),
    data_args: list[str] | None = None,
    model_args: dict[str, list[str]] | None = None,
    fit_args: list[str] | None = None,
) -> dict[tuple[str, int], Any]:
    """Fit and test each ``(model, seed)`` with the same budget; returns ``{(model, seed): RunResult}``."""
    from polyhead.face.cli import main
    from polyhead.train.experiment import fit_test

    out_dir = Path(out_dir)
    results = {}
    for seed in seeds:
        for model in models:
            common = [
                "--model.model", model, "--data.cache_dir", str(out_dir / "cache"),
                "--run.wandb", "disabled", "--run.progress", "plain", *(data_args or []),
            ]  # fmt: skip
            results[(model, seed)] = fit_test(
                main,
                domain="face",
                root=out_dir,
                experiment=f"{model}-seed{seed}",
                common_args=common,
                fit_args=[
                    "--seed_everything",
                    str(seed),
                    *(model_args or {}).get(model, []),
                    *(fit_args or []),
                ],
            )
    return results


def _stats(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def write_report(results: dict[tuple[str, int], Any], path: Path, title: str) -> str:
    """Markdown: per model mean ± std over seeds of PSNR, SSIM, landmark distance; the verdict."""
    seeds = sorted({s for _, s in results})
    metrics = (("test/psnr", "PSNR dB"), ("test/ssim", "SSIM"), ("test/lmd", "LMD px@512"))
    lines = [
        f"# {title}",
        "",
        f"Held-out rendered (SYNTHETIC) faces; seeds {seeds}; mean ± std over seeds.",
        "",
    ]
    lines += [
        "| model | " + " | ".join(n for _, n in metrics) + " | fit+test s |",
        "|---|" + "---|" * (len(metrics) + 1),
    ]
    rows: dict[str, dict[str, list[float]]] = {}
    for (model, _), r in results.items():
        d = rows.setdefault(model, {})
        for k, _ in metrics:
            if k in r.metrics:
                d.setdefault(k, []).append(r.metrics[k])
        d.setdefault("wall", []).append(r.wall_s)
        inp = rows.setdefault("degraded", {})
        for k, _ in metrics:
            key = k.replace("test/", "test/input_")
            if key in r.metrics and model == next(iter(results))[0]:
                inp.setdefault(k, []).append(r.metrics[key])
    for model in (*MODELS, "degraded"):
        if model not in rows:
            continue
        cells = [_stats(rows[model][k]) if rows[model].get(k) else "-" for k, _ in metrics]
        wall = f"{statistics.mean(rows[model]['wall']):.0f}" if rows[model].get("wall") else "-"
        lines.append(f"| {NAMES[model]} | " + " | ".join(cells) + f" | {wall} |")
    lines.append("")
    lines.append(verdict(results))
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def verdict(results: dict[tuple[str, int], Any]) -> str:
    """Whether RestoreFormer++ beats the U-Net on test PSNR in every seed (the paper's claim)."""
    seeds = sorted({s for m, s in results if m == "restoreformer"} & {s for m, s in results if m == "unet"})
    if not seeds:
        return "Verdict: needs both RestoreFormer++ and U-Net runs."
    gaps = [
        results[("restoreformer", s)].metrics["test/psnr"] - results[("unet", s)].metrics["test/psnr"]
        for s in seeds
    ]
    wins = sum(g > 0 for g in gaps)
    mean_gap = statistics.mean(gaps)
    holds = "holds" if wins == len(seeds) else ("does not hold" if wins == 0 else "is mixed")
    return (
        f"Verdict: the paper's claim (dictionary prior + cross-attention restores better than a restorer "
        f"without a prior) {holds} here on PSNR: RestoreFormer++ - U-Net = {mean_gap:+.3f} dB on average, "
        f"ahead in {wins}/{len(seeds)} seeds."
    )


def restore_examples(ckpt: Path, out_dir: Path) -> list[Any]:
    """Run ``polyhead-face restore`` on the repository's real photos with checkpoint ``ckpt``."""
    from polyhead.face.restore import Restorer, restore_files

    photos = _repo_photos()
    if not photos:
        return []
    restorer = Restorer.from_checkpoint(ckpt)
    return restore_files(photos, out_dir, restorer)


def run_quick(out_dir: Path) -> list[DemoRow]:
    from polyhead.train import rundir

    out_dir = Path(out_dir)
    fit = ["--trainer.max_epochs", str(QUICK_EPOCHS), "--trainer.limit_train_batches", str(QUICK_BATCHES)]
    results = run_models(
        out_dir,
        data_args=QUICK_DATA + QUICK_MODEL,
        model_args={"restoreformer": ["--model.stage1_epochs", str(QUICK_STAGE1)]},
        fit_args=fit,
    )
    rf, un = results[("restoreformer", 0)], results[("unet", 0)]
    write_report(results, rf.run_dir / "report.md", "Face restoration quick run (32 px rendered faces)")
    photos = []
    best = rundir.best_checkpoint(rf.run_dir)
    if best is not None:
        photos = restore_examples(best, rf.run_dir / "in_the_wild")
    n_faces = sum(len(p.faces) for p in photos)
    gap = rf.metrics["test/psnr"] - un.metrics["test/psnr"]
    note = (
        f"synthetic faces; degraded input {rf.metrics['test/input_psnr']:.2f} dB; "
        f"{len(photos)} real photos restored end to end ({n_faces} faces)"
    )
    if gap <= 0:
        note += "; the prior's gain does not show at this budget (see packages/face/README.md)"
    if max(rf.metrics["test/psnr"], un.metrics["test/psnr"]) <= rf.metrics["test/input_psnr"]:
        note += (
            f"; both restorers are still below the degraded input after {QUICK_EPOCHS * QUICK_BATCHES} steps"
        )
    return [
        DemoRow(
            "face",
            "RestoreFormer++",
            "rendered faces 32px (synthetic)",
            "test PSNR dB",
            rf.metrics["test/psnr"],
            "U-Net (no prior)",
            un.metrics["test/psnr"],
            rf.wall_s + un.wall_s,
            note=note,
        )
    ]


def _cli(args: list[str]) -> object:
    from polyhead.face.cli import main

    main(args)
    return None


DOMAIN = Domain(
    name="face",
    title="Blind face restoration with RestoreFormer++ (VQ dictionary + multi-scale cross-attention)",
    quick=run_quick,
    budget_s=150.0,
    sites=(
        AttentionSite(
            "decoder cross-attention, degraded features -> dictionary priors (latent and 2x latent)",
            kind="cross",
            layout="2d",
            config_key="model.attention",
        ),
    ),
    cli=_cli,
    metric="test/psnr",
    higher_is_better=True,
    matrix_args={
        "tiny": [
            *QUICK_MODEL,
            "--data.num_train",
            "32",
            "--data.num_val",
            "8",
            "--data.num_test",
            "16",
            "--model.landmark_images",
            "0",
            "--trainer.max_epochs",
            "2",
            "--model.stage1_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
        ],
        "quick": [
            *QUICK_DATA,
            *QUICK_MODEL,
            "--trainer.max_epochs",
            str(QUICK_EPOCHS),
            "--model.stage1_epochs",
            str(QUICK_STAGE1),
            "--trainer.limit_train_batches",
            str(QUICK_BATCHES),
        ],
        "full": ["--config", "configs/face/restoreformer.yaml"],
    },
)
