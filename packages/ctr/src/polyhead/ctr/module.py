"""LightningModule and LightningDataModule for CTR prediction (``polyhead-ctr``).

polyhead-ctr fit                                  # AutoInt on 200k generated Criteo-format rows
polyhead-ctr test                                 # test AUC/logloss -> metrics.json, explanations
polyhead-ctr fit --model.model fm                 # baselines: lr, fm, dnn; autoint+ adds a DNN
polyhead-ctr fit --data.data_path train.txt       # a real Criteo file (TSV, no header)
polyhead-ctr fit --data.data_path train.csv --data.format avazu
polyhead-ctr fit --data.holdout_last 100000       # the last 100k rows are the test split (time order)
polyhead-ctr predict --data.predict_path test.txt # Criteo's 39-column test file -> predictions.csv
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import torchmetrics
from lightning.pytorch.callbacks import EarlyStopping
from torch import Tensor, nn
from torch.utils.data import Dataset

from polyhead.ctr.calibration import plot_reliability, reliability_bins
from polyhead.ctr.data.spec import DatasetSpec, FieldSpec, SplitSpec, avazu_spec, criteo_spec
from polyhead.ctr.data.synthetic import (
    GENERATOR_VERSION,
    PLANTED_PAIRS,
    PLANTED_TRIPLE,
    generate_criteo,
    true_effects,
)
from polyhead.ctr.explain import effect_recovery, pair_ranks, pair_scores, plot_field_attention, rank_pairs
from polyhead.ctr.models import DNN, AutoInt, FactorizationMachine, LogisticRegression
from polyhead.train import log_figure, run_dir, stateful_loader, tune_cpu_allocator

# polars and the data engine (polyhead.ctr.data.encoder, .prepare, .tensors) are imported where data is read,
# not at import: ``fit --help`` only needs the signatures. (No TYPE_CHECKING block either: LightningCLI's
# jsonargparse executes those to resolve annotations.) The fitted encoder is typed ``Any`` here for that reason.

ModelName = Literal["autoint", "autoint+", "lr", "fm", "dnn"]


class BatchSlices(Dataset):
    """Batches as contiguous slices of pre-shuffled tensors: no per-row Python objects, no collation."""

    def __init__(self, tensors: tuple[Tensor, ...], batch_size: int) -> None:
        self.tensors, self.batch_size = tensors, batch_size
        self.n = tensors[0].shape[0]

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        s = i * self.batch_size
        return tuple(t[s : s + self.batch_size] for t in self.tensors)


class CTRDataModule(pl.LightningDataModule):
    """Raw click logs -> encoded, cached, split tensors.

    Args:
        data_path: a raw file; default: a generated Criteo-format file (see ``generate_rows``).
        format: ``criteo`` (TSV, no header), ``avazu`` (CSV with header), or ``csv``/``tsv``/``parquet``
            described by ``fields``.
        fields: feature spec for csv/tsv/parquet: ``[{"name": ..., "type": "categorical"|"numeric"}, ...]``
            (numeric fields may add ``integer: true``, ``numeric_mode``, ``min_buckets``, ``num_quantiles``).
        label: label column for csv/tsv/parquet.
        id_column: id column (kept for predictions; Avazu: ``id``); without one, rows are named by line number.
        generate_rows: rows of the generated default data (quick mode: 200k).
        seed: split and generator seed.
        split_column: a column holding ``train``/``val``/``test`` per row (the user's own split).
        time_column: train on the past, validate and test on the future, ordered by this column (Avazu:
            ``hour``); the last ``test_fraction`` of the time range is the test split, the
            ``val_fraction`` before it the validation split.
        holdout_last: the last N rows of the file are the test split, the N before them the validation
            split (Criteo's files are in time order).
        val_fraction: validation share for ``time_column``.
        test_fraction: test share for ``time_column``.
        min_count: categorical values seen fewer times in train map to OOV.
        numeric_mode: ``bucket`` (log buckets, or quantile buckets where those would collapse the field),
            ``log``, ``quantile``, or ``scale`` (value-scaled field embedding, the AutoInt paper's option).
        min_buckets: ``bucket`` uses quantiles where log buckets keep fewer distinct values than this.
        num_quantiles: quantile buckets per numeric field (at most).
        batch_size: rows per batch (paper: 1024).
        cache_dir: where generated data and preprocessed caches live.
        skip_bad_lines: skip and count malformed lines instead of failing on the first.
        predict_path: file to score with ``predict``, in the training data's format, with or without the
            label (Criteo's 39-column test file, Avazu's test CSV without ``click``).
        predict_output: where ``predict`` writes ``<id>,probability`` (CSV, or Parquet by suffix; default
            ``predictions.csv`` in the run directory).
    """

    def __init__(
        self,
        *,
        data_path: str | None = None,
        format: Literal["criteo", "avazu", "csv", "tsv", "parquet"] = "criteo",
        fields: list[dict[str, Any]] | None = None,
        label: str = "label",
        id_column: str | None = None,
        generate_rows: int = 200_000,
        seed: int = 0,
        split_column: str | None = None,
        time_column: str | None = None,
        holdout_last: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        min_count: int = 10,
        numeric_mode: Literal["bucket", "log", "quantile", "scale"] = "bucket",
        min_buckets: int = 8,
        num_quantiles: int = 32,
        batch_size: int = 1024,
        cache_dir: str = "runs/ctr/cache",
        skip_bad_lines: bool = False,
        predict_path: str | None = None,
        predict_output: str | None = None,
    ) -> None:
        super().__init__()
        # The training file is checked when it is read (predict with a checkpoint does not need it).
        if predict_path is not None and not Path(predict_path).is_file():
            raise FileNotFoundError(f"data.predict_path: no such file: {predict_path}")
        if format in ("csv", "tsv", "parquet") and not fields:
            raise ValueError(f"data.fields is required for format {format!r} (a list of {{name, type}})")
        if format == "criteo" and (split_column or time_column):
            raise ValueError(
                "data.split_column / data.time_column: Criteo files have no header and no such columns; "
                "use data.holdout_last N (the file is in time order) or the default hash split"
            )
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be positive, got {batch_size}")
        self.data_path, self.format, self.seed = data_path, format, seed
        self.generate_rows, self.batch_size = generate_rows, batch_size
        self.cache_dir, self.skip_bad_lines, self.predict_path = Path(cache_dir), skip_bad_lines, predict_path
        self.predict_output = predict_output
        self.split = SplitSpec.from_options(
            seed=seed,
            split_column=split_column,
            time_column=time_column,
            holdout_last=holdout_last,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
        )
        numeric = {"min_buckets": min_buckets, "num_quantiles": num_quantiles}
        if format == "criteo":
            self.spec = criteo_spec(min_count, numeric_mode, **numeric)
        elif format == "avazu":
            self.spec = avazu_spec(min_count, split_column=split_column, time_column=time_column)
        else:
            specs = [
                FieldSpec(**{"min_count": min_count, "numeric_mode": numeric_mode, **numeric, **f})
                for f in fields or []
            ]
            self.spec = DatasetSpec(format, label, specs, id_column, split_column, time_column)
        self.encoder: Any = None  # polyhead.ctr.data.encoder.FeatureEncoder once set up
        self.cache: Path | None = None
        self.planted = self.data_path is None
        self.skipped: dict[str, int] = {}

    def source_path(self) -> Path:
        if self.data_path is not None:
            if not Path(self.data_path).is_file():
                raise FileNotFoundError(f"data.data_path: no such file: {self.data_path}")
            return Path(self.data_path)
        name = f"generated_criteo_v{GENERATOR_VERSION}_{self.generate_rows}_seed{self.seed}.tsv"
        path = self.cache_dir / name
        if not path.is_file():
            tmp = path.with_suffix(".tmp")
            generate_criteo(tmp, self.generate_rows, seed=self.seed)
            tmp.rename(path)
        return path

    def _preprocess(self) -> Path:
        from polyhead.ctr.data.prepare import preprocess

        return preprocess(
            self.source_path(),
            self.spec,
            self.cache_dir,
            split=self.split,
            skip_bad_lines=self.skip_bad_lines,
        )

    def prepare_data(self) -> None:
        if self.trainer is None or self.trainer.state.stage != "predict":
            self._preprocess()

    def setup(self, stage: str) -> None:
        if stage == "predict":  # in predict_dataloader, once the checkpoint (and its encoder) is loaded
            return
        if self.cache is not None:
            return
        import polars

        from polyhead.ctr.data.encoder import FeatureEncoder
        from polyhead.ctr.data.tensors import frame_to_tensors

        self.cache = self._preprocess()
        self.encoder = FeatureEncoder.load(self.cache / "encoder.json")
        meta = json.loads((self.cache / "meta.json").read_text())
        self.skipped = meta.get("skipped_by_reason", {})
        df = polars.read_parquet(self.cache / "data.parquet")
        g = torch.Generator().manual_seed(self.seed)
        self.splits: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
        for name, code in (("train", 0), ("val", 1), ("test", 2)):
            part = df.filter(polars.col("split") == code)
            if part.height == 0 and stage in ("fit", "validate", "test"):
                raise ValueError(
                    f"{self.source_path()}: the {name} split is empty ({self.split.method} split)"
                )
            idx, val = frame_to_tensors(part, self.encoder)
            y = torch.from_numpy(part["label"].to_numpy().astype("float32"))
            if name == "test":
                self.test_lines = torch.from_numpy(part["line"].to_numpy().astype("int64"))
            if name == "train":  # shuffle rows once; epochs then shuffle the order of the batches
                perm = torch.randperm(len(y), generator=g)
                idx, val, y = idx[perm], val[perm], y[perm]
            self.splits[name] = (idx.contiguous(), val.contiguous(), y.contiguous())

    def _saved_data(self) -> tuple[Any, DatasetSpec] | None:
        # Set by CTRModule.on_load_checkpoint, which Lightning calls after setup and before the dataloaders.
        module = self.trainer.lightning_module if self.trainer is not None else None
        return getattr(module, "loaded_data", None)

    def _setup_predict(self) -> None:
        if getattr(self, "predict_data", None) is not None:
            return
        if self.predict_path is None:
            raise ValueError("predict needs data.predict_path (a file in the training data's format)")
        from polyhead.ctr.data.encoder import FeatureEncoder
        from polyhead.ctr.data.prepare import transform_file
        from polyhead.ctr.data.tensors import frame_to_tensors

        saved = self._saved_data()
        if saved is not None:  # the run's own encoder and format: nothing is rebuilt from other files
            self.encoder, spec = saved
        else:  # an untrained model or a checkpoint written before encoders were saved in it
            self.encoder = FeatureEncoder.load(self._preprocess() / "encoder.json")
            spec = self.spec
        module = self.trainer.lightning_module if self.trainer is not None else None
        if module is not None and module.net is None:  # untrained (--run.allow_untrained): build it here
            module.build(self.encoder.cardinalities)
            module.to(self.trainer.strategy.root_device)
        df, self.skipped = transform_file(
            self.predict_path, spec, self.encoder, skip_bad_lines=self.skip_bad_lines
        )
        idx, val = frame_to_tensors(df, self.encoder)
        id_name = spec.id_column if "id" in df.columns and spec.id_column else "line"
        self.predict_ids = (id_name, df["id" if id_name != "line" else "line"])
        self.predict_data = (idx, val, torch.arange(df.height))

    def _loader(self, split: str, shuffle: bool) -> Any:
        return stateful_loader(
            BatchSlices(self.splits[split], self.batch_size), batch_size=None, shuffle=shuffle
        )

    def train_dataloader(self) -> Any:
        return self._loader("train", True)

    def val_dataloader(self) -> Any:
        return self._loader("val", False)

    def test_dataloader(self) -> Any:
        saved = self._saved_data()
        if saved is not None and self.encoder is not None and saved[0].to_dict() != self.encoder.to_dict():
            raise ValueError(
                f"the data settings differ from the checkpoint's: {self.source_path()} encodes with other "
                "vocabularies or buckets than the model was trained with; pass the training run's data options"
            )
        return self._loader("test", False)

    def predict_dataloader(self) -> Any:
        self._setup_predict()
        return stateful_loader(BatchSlices(self.predict_data, self.batch_size), batch_size=None)


class CTRModule(pl.LightningModule):
    """CTR model training/evaluation with AUC and logloss; explanations for AutoInt.

    Args:
        model: ``autoint`` (default), ``autoint+``, ``lr``, ``fm`` or ``dnn``.
        embed_dim: field embedding size d (paper: 16).
        num_layers: AutoInt interacting layers (paper: 3).
        num_heads: heads per interacting layer (paper: 2).
        attn_size: attention size per head (paper: 32).
        attention: attention variant, ``{"name": "mha", ...}`` (any name from polyhead.attention).
        dnn_hidden: DNN / AutoInt+ hidden sizes.
        dropout: DNN dropout.
        wide: AutoInt / AutoInt+ with an added first-order (logistic-regression) logit.
        attn_out_proj: keep the attention module's output projection W_o in AutoInt's interacting layers
            (default; the paper's layer has none).
        attn_init_std: N(0, std) initialisation of the interacting layers' projections with zero biases
            (DeepCTR-Torch: 0.05); None keeps PyTorch's default init.
        lr: Adam learning rate (paper: 1e-3).
        weight_decay: Adam weight decay.
        early_stop_patience: epochs without val AUC improvement before stopping (None: no early stopping).
        lr_patience: epochs without improvement before halving the learning rate (None: constant rate).
        explain_batches: test batches whose attention maps are averaged for the explanations.
    """

    def __init__(
        self,
        *,
        model: ModelName = "autoint",
        embed_dim: int = 16,
        num_layers: int = 3,
        num_heads: int = 2,
        attn_size: int = 32,
        attention: dict[str, Any] | None = None,
        dnn_hidden: list[int] | None = None,
        dropout: float = 0.0,
        wide: bool = False,
        attn_out_proj: bool = True,
        attn_init_std: float | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        early_stop_patience: int | None = 2,
        lr_patience: int | None = 1,
        explain_batches: int = 20,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net: nn.Module | None = None
        self.cardinalities: list[int] | None = None
        for split in ("val", "test"):
            setattr(self, f"{split}_auc", torchmetrics.classification.BinaryAUROC())
            setattr(self, f"{split}_logloss", torchmetrics.MeanMetric())
        self._maps: Tensor | None = None
        self._map_count = 0
        self._test_logits: list[Tensor] = []
        self._predictions: list[Tensor] = []
        self.loaded_data: tuple[Any, DatasetSpec] | None = None  # (FeatureEncoder, DatasetSpec)

    def build(self, cardinalities: list[int]) -> None:
        hp = self.hparams
        hidden = list(hp.dnn_hidden) if hp.dnn_hidden is not None else [400, 400]
        if hp.model in ("autoint", "autoint+"):
            self.net = AutoInt(
                cardinalities,
                embed_dim=hp.embed_dim,
                num_layers=hp.num_layers,
                num_heads=hp.num_heads,
                attn_size=hp.attn_size,
                attention=hp.attention or {"name": "mha"},
                dnn_hidden=hidden if hp.model == "autoint+" else None,
                dropout=hp.dropout,
                wide=hp.wide,
                out_proj=hp.attn_out_proj,
                init_std=hp.attn_init_std,
            )
        elif hp.model == "lr":
            self.net = LogisticRegression(cardinalities)
        elif hp.model == "fm":
            self.net = FactorizationMachine(cardinalities, hp.embed_dim)
        else:
            self.net = DNN(cardinalities, hp.embed_dim, hidden, hp.dropout)
        self.cardinalities = cardinalities

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        if stage == "predict":  # built from the checkpoint (on_load_checkpoint) or in predict_dataloader
            return
        if self.net is None:
            dm.setup(stage)
            self.build(dm.encoder.cardinalities)
        # Saved in every checkpoint: predict reads new files with these, never with a refitted encoder.
        self.data_state = {"encoder": dm.encoder.to_dict(), "spec": asdict(dm.spec)}
        if stage == "fit" and self.trainer.is_global_zero:
            d = run_dir(self.trainer)
            d.mkdir(parents=True, exist_ok=True)
            dm.encoder.save(d / "encoder.json")

    def on_fit_start(self) -> None:
        if self.device.type == "cpu":
            # CPU training re-faults every step's large activations under glibc's default malloc thresholds
            # (polyhead.train.allocator); the CLI sets them too, this covers a plain Trainer.
            tune_cpu_allocator()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ctr_cardinalities"] = self.cardinalities
        state = getattr(self, "data_state", None)
        if state is not None:
            checkpoint["ctr_encoder"], checkpoint["ctr_data_spec"] = state["encoder"], state["spec"]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from polyhead.ctr.data.tensors import data_from_checkpoint

        if self.net is None and checkpoint.get("ctr_cardinalities"):
            self.build(checkpoint["ctr_cardinalities"])
        self.loaded_data = data_from_checkpoint(checkpoint)
        if self.loaded_data is not None:
            self.data_state = {"encoder": checkpoint["ctr_encoder"], "spec": checkpoint["ctr_data_spec"]}

    def forward(self, idx: Tensor, val: Tensor) -> tuple[Tensor, Tensor | None]:
        assert self.net is not None, "model not built: call build(cardinalities) or run through a Trainer"
        logit, aux = self.net(idx, val)
        # float32 logits: under bf16 autocast the output layer gives bf16, whose ~3 significant digits tie
        # most probabilities of a barely trained model (AUC exactly 0.5) and coarsen the loss.
        return logit.float(), aux

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        idx, val, y = batch
        logit, aux = self(idx, val)
        loss = F.binary_cross_entropy_with_logits(logit, y)
        self.log("train/logloss", loss, prog_bar=True)
        if aux is not None:
            self.log("train/aux_loss", aux)
            loss = loss + aux
        return loss

    def _eval_step(self, split: str, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        idx, val, y = batch
        logit, _ = self(idx, val)
        getattr(self, f"{split}_auc").update(torch.sigmoid(logit), y.long())
        getattr(self, f"{split}_logloss").update(
            F.binary_cross_entropy_with_logits(logit, y, reduction="none")
        )
        return logit

    def _eval_end(self, split: str) -> None:
        self.log(f"{split}/auc", getattr(self, f"{split}_auc").compute(), prog_bar=True, sync_dist=True)
        self.log(
            f"{split}/logloss", getattr(self, f"{split}_logloss").compute(), prog_bar=True, sync_dist=True
        )
        getattr(self, f"{split}_auc").reset()
        getattr(self, f"{split}_logloss").reset()

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        from polyhead.attention.analysis import capture_attention

        explain = isinstance(self.net, AutoInt) and batch_idx < self.hparams.explain_batches
        net = self.net
        with capture_attention(net) if explain and net is not None else contextlib.nullcontext() as maps:
            self._test_logits.append(self._eval_step("test", batch).detach().cpu())
        if not explain or maps is None:
            return
        # (layers, heads, F, F): mean over the batch of each layer's field-to-field attention.
        batch_maps = torch.stack([ws[0].mean(0) for ws in maps.values()]).cpu()
        self._maps = batch_maps if self._maps is None else self._maps + batch_maps
        self._map_count += 1

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")
        logits = torch.cat(self._test_logits) if self._test_logits else None
        maps, count = self._maps, self._map_count
        self._test_logits, self._maps, self._map_count = [], None, 0
        if not self.trainer.is_global_zero:
            return
        dm = self.trainer.datamodule
        report: dict[str, Any] = {}
        for reason, n in dm.skipped.items():  # malformed lines skipped with skip_bad_lines, by kind
            self.log("data/skipped/" + re.sub(r"[^A-Za-z0-9]+", "_", reason).strip("_"), float(n))
        if dm.skipped:
            self.log("data/skipped_lines", float(sum(dm.skipped.values())))
        if logits is not None and len(logits) == len(dm.splits["test"][2]):
            # Calibration (one process; under DDP each rank saw only its share of the rows).
            bins = reliability_bins(torch.sigmoid(logits), dm.splits["test"][2])
            report["calibration"] = bins
            self.log("test/ece", bins["ece"])
            log_figure(self.trainer, "test/reliability", plot_reliability(bins))
        ranking = None
        if maps is not None:
            mean_maps = maps / count
            ranking = rank_pairs(pair_scores(mean_maps), dm.encoder.names)
            report["top_pairs"] = [list(p) for p in ranking[:15]]
        # On the generated data the true logit and its planted parts are known for every test row (one
        # process: under DDP each rank saw only its share of the rows, so this is skipped).
        if getattr(dm, "planted", False) and logits is not None and len(logits) == len(dm.test_lines):
            rows = dm.test_lines.numpy() - 1
            effects = {k: v[rows] for k, v in true_effects(dm.generate_rows, seed=dm.seed).items()}
            truth = torch.from_numpy(effects.pop("logit"))
            _, _, y = dm.splits["test"]
            # The generator's true logit on the same test rows: the Bayes-optimal AUC of this data.
            report["bayes_auc"] = torchmetrics.functional.classification.binary_auroc(
                truth.float(), y.long()
            ).item()
            self.log("test/bayes_auc", report["bayes_auc"])
            report["effect_recovery"] = effect_recovery(logits.double().numpy(), effects)
            for k, g in report["effect_recovery"].items():
                self.log(f"test/recovery_{k.replace(':', '_')}", g)
            if ranking is not None:
                a, b, c = PLANTED_TRIPLE
                planted = [*PLANTED_PAIRS, (a, b), (a, c), (b, c)]
                ranks = pair_ranks(ranking, planted)
                report["planted_pair_ranks"] = ranks
                report["num_pairs"] = len(ranking)
                for k, r in ranks.items():
                    self.log(f"test/rank_{k}", float(r))
        if not report:
            return
        out = run_dir(self.trainer)
        out.mkdir(parents=True, exist_ok=True)
        (out / "explain.json").write_text(json.dumps(report, indent=2) + "\n")
        if maps is not None:
            torch.save(mean_maps, out / "field_attention.pt")
            log_figure(
                self.trainer, "explain/field_attention", plot_field_attention(mean_maps, dm.encoder.names)
            )

    def predict_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        idx, val, _ = batch
        p = torch.sigmoid(self(idx, val)[0])
        self._predictions.append(p.cpu())
        return p

    def on_predict_epoch_end(self) -> None:
        probs = torch.cat(self._predictions).numpy()
        self._predictions = []
        dm = self.trainer.datamodule
        id_name, ids = dm.predict_ids
        path = Path(dm.predict_output) if dm.predict_output else run_dir(self.trainer) / "predictions.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        import polars

        out = polars.DataFrame({id_name: ids, "probability": probs})
        out.write_parquet(path) if path.suffix in (".parquet", ".pq") else out.write_csv(path)
        skipped = f" ({sum(dm.skipped.values())} malformed lines skipped)" if dm.skipped else ""
        print(f"polyhead-ctr: wrote {len(ids)} predictions to {path}{skipped}")

    def configure_optimizers(self) -> Any:
        params = list(self.parameters())
        # The fused kernel is the same Adam update in one pass over all tensors (CPU and CUDA), several
        # times faster per step than the per-tensor loop (README, Models).
        fused = all(p.device.type in ("cpu", "cuda") for p in params)
        opt = torch.optim.Adam(
            params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay, fused=fused or None
        )
        if self.hparams.lr_patience is None:
            return opt
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=0.5, patience=self.hparams.lr_patience
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/auc"}}

    def configure_callbacks(self) -> list[Any]:
        if self.hparams.early_stop_patience is None:
            return []
        return [EarlyStopping(monitor="val/auc", mode="max", patience=self.hparams.early_stop_patience)]
