"""The LightningModule of ``polyhead-face``: RestoreFormer++ (two stages), the U-Net baseline, the input.

    polyhead-face fit                               # both stages on rendered (synthetic) faces, 64 px
    polyhead-face fit --model.stage 1               # the dictionary only
    polyhead-face fit --model.stage 2 --model.dictionary_ckpt runs/face/default/version_0/checkpoints/best-....ckpt
    polyhead-face fit --model.model unet            # the baseline without a prior, same losses and budget
    polyhead-face test                              # PSNR / SSIM / landmark distance -> metrics.json
    polyhead-face fit --model.attention '{name: mha}'   # any cross-attention variant at the fusion sites

Losses: L1 + SSIM (+ hinge patch-GAN with ``adv_weight > 0``, + VGG perceptual with
``perceptual_weights``) for every model; stage 1 adds the VQ codebook/commitment loss, stage 2 the
latent loss pulling the degraded latents to the high-quality face's dictionary codes.
Wang et al., "RestoreFormer++" (TPAMI 2023, arXiv:2308.07228).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torchmetrics import MeanMetric, Metric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from polyhead.face.losses import hinge_d_loss, hinge_g_loss, l1_loss, ssim_loss
from polyhead.face.models import PatchDiscriminator, RestoreFormerPP, UNetRestorer
from polyhead.train import log_figure, run_dir

if TYPE_CHECKING:
    from polyhead.face.landmarks import FaceMesh


def _note(msg: str) -> None:
    print(f"polyhead-face: {msg}", file=sys.stderr, flush=True)


class FaceModule(pl.LightningModule):
    """Face restoration model + losses + metrics.

    Args:
        model: ``restoreformer`` (RestoreFormer++), ``unet`` (no prior) or ``degraded`` (the input itself;
            nothing to train, for the results table).
        stage: RestoreFormer++ stage to train: None = both (stage 1 for ``stage1_epochs``, then stage 2),
            1 = the dictionary only, 2 = the restorer (dictionary from ``dictionary_ckpt``).
        stage1_epochs: epochs of stage 1 when both stages are trained in one ``fit``.
        dictionary_ckpt: a stage-1 checkpoint whose dictionary (encoder, codebook, decoder) stage 2 uses.
        resolution: face resolution (the data is resized to it).
        channels, channel_mult, z_dim: widths of the encoders/decoder (the U-Net uses the same).
        num_codes: dictionary size.
        heads: cross-attention heads.
        attention: attention config of the fusion sites (``{name: multiscale_cross}`` by default).
        fusion_resolutions: decoder resolutions with a fusion site (default: latent and 2x latent).
        lr: Adam learning rate (generator and discriminator).
        l1_weight, ssim_weight, codebook_weight, latent_weight: loss weights.
        adv_weight: weight of the hinge patch-GAN loss (0 = off; the discriminator is then not built).
        perceptual_weight, perceptual_weights: VGG16 perceptual loss from a local torchvision VGG16
            state dict (no download possible here; skipped with one message when no path is given).
        lpips_weights: an ``lpips`` LPIPS(net="vgg") state dict: ``test/lpips`` (skipped without one).
        identity_weights, identity_arch: a torchvision ResNet face-embedding state dict:
            ``test/identity_distance`` (1 - cosine; skipped without one).
        reinit_every: re-initialise dead codes every N stage-1 steps (0 = never).
        landmark_images: test images scored with the MediaPipe landmark distance (0 = off).
    """

    def __init__(
        self,
        *,
        model: Literal["restoreformer", "unet", "degraded"] = "restoreformer",
        stage: int | None = None,
        stage1_epochs: int = 6,
        dictionary_ckpt: str | None = None,
        resolution: int = 64,
        channels: int = 32,
        channel_mult: list[int] | None = None,
        z_dim: int = 64,
        num_codes: int = 512,
        heads: int = 4,
        attention: dict[str, Any] | None = None,
        fusion_resolutions: list[int] | None = None,
        lr: float = 1e-3,
        l1_weight: float = 1.0,
        ssim_weight: float = 0.5,
        codebook_weight: float = 1.0,
        latent_weight: float = 0.25,
        adv_weight: float = 0.0,
        perceptual_weight: float = 0.1,
        perceptual_weights: str | None = None,
        lpips_weights: str | None = None,
        identity_weights: str | None = None,
        identity_arch: str = "resnet50",
        reinit_every: int = 50,
        landmark_images: int = 64,
    ) -> None:
        super().__init__()
        if stage not in (None, 1, 2):
            raise ValueError(f"model.stage must be 1, 2 or null (both), got {stage!r}")
        if stage is not None and model != "restoreformer":
            raise ValueError(f"model.stage applies to model=restoreformer only, got model={model!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.model_name = model
        self.resolution = resolution
        mult = tuple(channel_mult or (1, 2, 2, 4))
        self.net: RestoreFormerPP | UNetRestorer | None
        if model == "restoreformer":
            self.net = RestoreFormerPP(
                resolution=resolution, channels=channels, channel_mult=mult, z_dim=z_dim, num_codes=num_codes,
                heads=heads, fusion_resolutions=fusion_resolutions, attention=attention,
            )  # fmt: skip
        elif model == "unet":
            self.net = UNetRestorer(resolution=resolution, channels=channels, channel_mult=mult, z_dim=z_dim)
        else:
            self.net = None
            self.register_parameter("_dummy", torch.nn.Parameter(torch.zeros(1)))  # an optimizer needs one
        self.disc = PatchDiscriminator(channels=channels) if adv_weight > 0 and self.net is not None else None
        self.perceptual = None
        if perceptual_weights is not None:
            from polyhead.face.perceptual import VGGPerceptualLoss

            self.perceptual = VGGPerceptualLoss.from_file(perceptual_weights)
        self.lpips = self.identity = None
        if lpips_weights is not None:
            from polyhead.face.perceptual import LPIPS

            self.lpips = LPIPS.from_file(lpips_weights)
        if identity_weights is not None:
            from polyhead.face.perceptual import IdentityDistance

            self.identity = IdentityDistance.from_file(identity_weights, arch=identity_arch)
        self.lpips_mean, self.identity_mean = MeanMetric(), MeanMetric()
        self.metrics = torch.nn.ModuleDict()
        for split in ("val", "test"):
            for who in ("", "input_"):
                self.metrics[f"{split}_{who}psnr"] = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))
                self.metrics[f"{split}_{who}ssim"] = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.lmd = MeanMetric()
        self.lmd_input = MeanMetric()
        self._lmd_done = self._lmd_found = self._lmd_restored_found = 0
        self._mesh: FaceMesh | None = None
        self._data_settings: dict[str, Any] | None = None
        self._test_rows: list[dict[str, Any]] = []

    # ---- set-up, checkpoints ---------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage == "fit" and self.perceptual is None and hp.perceptual_weight > 0 and self.net is not None:
            _note(
                "perceptual loss off: no --model.perceptual_weights given (torchvision VGG16 weights cannot be "
                "downloaded here; pass a local state dict to enable it)"
            )
        if stage == "fit" and isinstance(self.net, RestoreFormerPP) and hp.stage == 2 and self.net.stage == 1:
            if hp.dictionary_ckpt:
                self._load_dictionary(hp.dictionary_ckpt)
            else:
                _note(
                    "stage 2 without --model.dictionary_ckpt: the dictionary is untrained (random codebook)"
                )
            self.net.start_stage2()
        if stage == "test" and (self.lpips is None or self.identity is None):
            missing = [
                n for n, m in (("LPIPS", self.lpips), ("identity distance", self.identity)) if m is None
            ]
            _note(
                f"{' and '.join(missing)} not measured: pretrained weights cannot be downloaded here; pass "
                "--model.lpips_weights / --model.identity_weights (local state dicts) to measure them"
            )
        dm = self.trainer.datamodule if self.trainer is not None else None
        if dm is not None and hasattr(dm, "settings"):
            self._data_settings = dm.settings()

    def _load_dictionary(self, path: str) -> None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"model.dictionary_ckpt: {p} does not exist")
        state = torch.load(p, map_location="cpu", weights_only=True)["state_dict"]
        vq = {k[len("net.vq.") :]: v for k, v in state.items() if k.startswith("net.vq.")}
        if not vq:
            raise ValueError(f"model.dictionary_ckpt: {p} holds no RestoreFormer++ dictionary (net.vq.*)")
        assert isinstance(self.net, RestoreFormerPP)  # called by setup() for RestoreFormer++ stage 2 only
        try:
            self.net.vq.load_state_dict(vq)
        except RuntimeError as err:
            raise ValueError(
                f"model.dictionary_ckpt: {p} does not match this model's widths: {err}"
            ) from None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["face_stage"] = getattr(self.net, "stage", None)
        checkpoint["face_data_settings"] = self._data_settings

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if (
            checkpoint.get("face_stage") == 2
            and isinstance(self.net, RestoreFormerPP)
            and self.net.stage == 1
        ):
            self.net.start_stage2(copy_encoder=False)
        self._trained_data_settings = checkpoint.get("face_data_settings")

    # ---- forward ---------------------------------------------------------------------------------
    @property
    def current_stage(self) -> int | None:
        return self.net.stage if isinstance(self.net, RestoreFormerPP) else None

    def restore(self, lq: Tensor) -> Tensor:
        """Restore faces ``(B, 3, R, R)`` in [0, 1] -> [0, 1]."""
        if self.net is None:
            return lq
        return ((self.net(lq * 2 - 1) + 1) / 2).clamp(0, 1)

    def on_train_epoch_start(self) -> None:
        hp = self.hparams
        if (
            isinstance(self.net, RestoreFormerPP)
            and hp.stage is None
            and self.net.stage == 1
            and self.current_epoch >= hp.stage1_epochs
        ):
            _note(
                f"epoch {self.current_epoch}: dictionary learnt, starting stage 2 (RestoreFormer++ restorer)"
            )
            self.net.start_stage2()

    # ---- training --------------------------------------------------------------------------------
    def _pixel_losses(self, out01: Tensor, hq: Tensor) -> dict[str, Tensor]:
        hp = self.hparams
        losses = {"l1": hp.l1_weight * l1_loss(out01, hq), "ssim": hp.ssim_weight * ssim_loss(out01, hq)}
        if self.perceptual is not None and hp.perceptual_weight > 0:
            losses["perceptual"] = hp.perceptual_weight * self.perceptual(out01, hq)
        return losses

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        if self.net is None:
            return None
        hp = self.hparams
        opts = self.optimizers()
        opt_g, opt_d = opts if isinstance(opts, list) else (opts, None)
        hq, lq = batch["hq"], batch["lq"]
        stage = self.current_stage
        if stage == 1:
            assert isinstance(self.net, RestoreFormerPP)  # only RestoreFormer++ has stages
            rec, q, z = self.net.reconstruct(hq * 2 - 1)
            out01 = ((rec + 1) / 2).clamp(0, 1)
            losses = self._pixel_losses((rec + 1) / 2, hq)
            losses["codebook"] = hp.codebook_weight * q.loss
            self.log("train/codebook_usage", q.usage)
            self.log("train/perplexity", q.perplexity)
        elif stage == 2:
            assert isinstance(self.net, RestoreFormerPP)
            res = self.net.restore(lq * 2 - 1)
            out01 = ((res.image + 1) / 2).clamp(0, 1)
            losses = self._pixel_losses((res.image + 1) / 2, hq)
            losses["latent"] = hp.latent_weight * F.mse_loss(res.latent, self.net.hq_codes(hq * 2 - 1))
            self.log("train/lq_code_perplexity", res.quant.perplexity)
        else:
            raw = self.net(lq * 2 - 1)
            out01 = ((raw + 1) / 2).clamp(0, 1)
            losses = self._pixel_losses((raw + 1) / 2, hq)
        if self.disc is not None:
            losses["adv"] = hp.adv_weight * hinge_g_loss(self.disc(out01 * 2 - 1))
        loss = torch.stack(list(losses.values())).sum()
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt_g.step()
        if self.disc is not None:
            assert opt_d is not None  # configure_optimizers adds the discriminator's optimizer with it
            d_loss = hinge_d_loss(self.disc(hq * 2 - 1), self.disc(out01.detach() * 2 - 1))
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            opt_d.step()
            self.log("train/d_loss", d_loss)
        if (
            stage == 1
            and hp.reinit_every
            and (self.global_step // (2 if self.disc else 1)) % hp.reinit_every == 0
        ):
            assert isinstance(self.net, RestoreFormerPP)
            n = self.net.vq.quantizer.reinit_dead(z)
            self.log("train/codes_reinit", float(n))
        for k, v in losses.items():
            self.log(f"train/{k}", v)
        self.log("train/loss", loss, prog_bar=True)
        if stage is not None:
            self.log("train/stage", float(stage))
        return loss

    def configure_optimizers(self) -> Any:
        lr = self.hparams.lr
        params = list(self.net.parameters()) if self.net is not None else [self._dummy]
        opt_g = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.9))
        if self.disc is None:
            return opt_g
        return [opt_g, torch.optim.Adam(self.disc.parameters(), lr=lr, betas=(0.5, 0.9))]

    # ---- evaluation ------------------------------------------------------------------------------
    def _eval_batch(self, split: str, batch: dict[str, Any], batch_idx: int) -> Tensor:
        hq, lq = batch["hq"], batch["lq"]
        out = self.restore(lq)
        m = self.metrics
        # ModuleDict is not generic: its items read as Module; these are the torchmetrics built in __init__
        cast(Metric, m[f"{split}_psnr"]).update(out, hq)
        cast(Metric, m[f"{split}_ssim"]).update(out, hq)
        cast(Metric, m[f"{split}_input_psnr"]).update(lq, hq)
        cast(Metric, m[f"{split}_input_ssim"]).update(lq, hq)
        for name in ("psnr", "ssim", "input_psnr", "input_ssim"):
            self.log(f"{split}/{name}", m[f"{split}_{name}"], on_epoch=True, prog_bar=name == "psnr")
        if isinstance(self.net, RestoreFormerPP):
            with torch.no_grad():
                q = self.net.vq.quantizer(self.net.vq.encoder(hq * 2 - 1)[0])
            self.log(f"{split}/codebook_usage", q.usage, on_epoch=True)
            self.log(f"{split}/perplexity", q.perplexity, on_epoch=True)
        return out

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self._eval_batch("val", batch, batch_idx)
        if batch_idx == 0 and not self.trainer.sanity_checking:
            from polyhead.face.explain import side_by_side

            fig = side_by_side(batch["lq"][:6], out[:6], batch["hq"][:6], title=f"epoch {self.current_epoch}")
            log_figure(self.trainer, "val/side_by_side", fig)
            if self.current_stage == 2:
                from polyhead.face.explain import attention_explanation, plot_explanation

                for site, expl in attention_explanation(self.net, batch["lq"][:1]).items():
                    title = f"epoch {self.current_epoch}, fusion site {site}x{site}"
                    fig = plot_explanation(batch["lq"][0], out[0], expl, title=title)
                    log_figure(self.trainer, f"val/attention_site{site}", fig)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self._eval_batch("test", batch, batch_idx)
        hq, lq = batch["hq"], batch["lq"]
        per_psnr = -10 * torch.log10(((out - hq) ** 2).flatten(1).mean(1).clamp_min(1e-10))
        in_psnr = -10 * torch.log10(((lq - hq) ** 2).flatten(1).mean(1).clamp_min(1e-10))
        params = batch.get("params") or {}
        for j in range(hq.shape[0]):
            row = {
                "index": int(batch["index"][j]),
                "psnr": float(per_psnr[j]),
                "input_psnr": float(in_psnr[j]),
            }
            row.update({k: float(v[j]) for k, v in params.items()})
            self._test_rows.append(row)
        if batch_idx == 0:
            from polyhead.face.explain import side_by_side

            fig = side_by_side(lq[:8], out[:8], hq[:8], title="test")
            log_figure(self.trainer, "test/side_by_side", fig)
        if self.lpips is not None:
            self.lpips_mean.update(self.lpips(out, hq))
            self.log("test/lpips", self.lpips_mean, on_epoch=True)
        if self.identity is not None:
            self.identity_mean.update(self.identity(out, hq))
            self.log("test/identity_distance", self.identity_mean, on_epoch=True)
        n_left = self.hparams.landmark_images - self._lmd_done
        if n_left > 0:
            self._landmarks(out[:n_left], lq[:n_left], hq[:n_left])

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[str]:
        """Restore aligned faces (``--data.predict_dir``) into ``<run dir>/predictions/<name>.png``."""
        from polyhead.face.data.images import save_image

        out = self.restore(batch["lq"])
        d = run_dir(self.trainer) / "predictions"
        written = []
        for img, name in zip(out, batch["name"], strict=True):
            u8 = (img.permute(1, 2, 0).float().cpu().numpy() * 255 + 0.5).astype(np.uint8)
            written.append(str(save_image(d / f"{Path(name).stem}.png", u8)))
        return written

    def _landmarks(self, out: Tensor, lq: Tensor, hq: Tensor) -> None:
        from polyhead.face.landmarks import FaceMesh, landmark_distance

        if self._mesh is None:
            self._mesh = FaceMesh()

        def u8(t: Tensor) -> np.ndarray:
            return (t.permute(1, 2, 0).float().cpu().numpy() * 255 + 0.5).astype(np.uint8)

        for o, d, h in zip(out, lq, hq, strict=True):
            self._lmd_done += 1
            dist, ref = landmark_distance(u8(o), u8(h), self._mesh)
            if ref is None:
                continue  # the mesh finds no face in the ground truth: not scored
            self._lmd_found += 1
            # A restored face in which the mesh finds no face scores as missing, not as zero.
            if dist is not None:
                self.lmd.update(dist)
            din, _ = landmark_distance(u8(d), u8(h), self._mesh)
            if din is not None:
                self.lmd_input.update(din)
            self._lmd_restored_found += dist is not None

    def on_test_epoch_end(self) -> None:
        if self._lmd_found:
            # A mean over no face is left out of metrics.json rather than written as NaN.
            if self.lmd.update_count:
                self.log("test/lmd", self.lmd.compute())
            if self.lmd_input.update_count:
                self.log("test/input_lmd", self.lmd_input.compute())
            self.log("test/lmd_scored_faces", float(self._lmd_found))
            self.log("test/lmd_restored_detected", self._lmd_restored_found / self._lmd_found)
        dm = self.trainer.datamodule
        for reason, n in getattr(dm, "skipped", {}).items():
            self.log(f"data/skipped_{reason}", float(n))
        if self.trainer.is_global_zero:
            d = run_dir(self.trainer)
            d.mkdir(parents=True, exist_ok=True)
            with (d / "test_images.jsonl").open("w") as f:
                for row in self._test_rows:
                    f.write(json.dumps(row) + "\n")
            settings = {
                "trained_on": getattr(self, "_trained_data_settings", None),
                "tested_on": self._data_settings,
            }
            (d / "data_settings.json").write_text(json.dumps(settings, indent=2) + "\n")
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None
