"""What a user describes about a CTR data set: its layout and fields (:class:`DatasetSpec`,
:class:`FieldSpec`, the Criteo and Avazu layouts) and how its rows are split (:class:`SplitSpec`).

Plain dataclasses without polars, so the command line (``polyhead-ctr fit --help``) builds its options
without importing the data engine; the readers (``polyhead.ctr.data.formats``), splits
(``polyhead.ctr.data.splits``) and preprocessing use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FieldType = Literal["categorical", "numeric"]


@dataclass(frozen=True)
class FieldSpec:
    """One input column.

    Attributes:
        name: column name.
        type: ``categorical`` or ``numeric``.
        min_count: categorical values seen fewer times in the training split map to the field's OOV index.
        numeric_mode: how a numeric field enters the model (see ``polyhead.ctr.data.buckets``): ``bucket``
            (log buckets floor(ln(x)^2), or quantile buckets where the log buckets would keep fewer than
            ``min_buckets`` distinct values), ``log``, ``quantile`` (forced), or ``scale`` (the value times
            the field embedding).
        integer: a numeric field that must hold integers (Criteo's counts): ``3.5`` or ``1e9`` is a
            malformed line, not a silently accepted float.
        min_buckets: the fewest distinct buckets ``bucket`` accepts from the log transform.
        num_quantiles: quantile buckets of a field (at most; fewer where it has fewer distinct values).
    """

    name: str
    type: FieldType
    min_count: int = 10
    numeric_mode: Literal["bucket", "log", "quantile", "scale"] = "bucket"
    integer: bool = False
    min_buckets: int = 8
    num_quantiles: int = 32

    def __post_init__(self) -> None:
        if self.type not in ("categorical", "numeric"):
            raise ValueError(
                f"field {self.name!r}: type must be 'categorical' or 'numeric', got {self.type!r}"
            )
        if self.numeric_mode not in ("bucket", "log", "quantile", "scale"):
            raise ValueError(
                f"field {self.name!r}: numeric_mode must be bucket, log, quantile or scale, got {self.numeric_mode!r}"
            )
        if self.min_count < 1 or self.min_buckets < 1 or self.num_quantiles < 2:
            raise ValueError(
                f"field {self.name!r}: min_count, min_buckets >= 1 and num_quantiles >= 2 required"
            )


@dataclass(frozen=True)
class DatasetSpec:
    """A whole file: its layout, label and feature fields."""

    format: Literal["criteo", "avazu", "csv", "tsv", "parquet"]
    label: str
    fields: list[FieldSpec]
    id_column: str | None = None
    split_column: str | None = None
    time_column: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]


def criteo_spec(min_count: int = 10, numeric_mode: str = "bucket", **numeric: int) -> DatasetSpec:
    """Criteo display-ads layout: label, I1..I13 (integer counts), C1..C26 (hashed categories).

    ``numeric`` passes ``min_buckets`` / ``num_quantiles`` to the integer fields.
    """
    fields = [
        FieldSpec(f"I{i}", "numeric", min_count, numeric_mode, integer=True, **numeric)  # type: ignore[arg-type]
        for i in range(1, 14)
    ]
    fields += [FieldSpec(f"C{i}", "categorical", min_count) for i in range(1, 27)]
    return DatasetSpec("criteo", "label", fields)


AVAZU_CATEGORICAL = [
    "hour",
    "C1",
    "banner_pos",
    "site_id",
    "site_domain",
    "site_category",
    "app_id",
    "app_domain",
    "app_category",
    "device_id",
    "device_ip",
    "device_model",
    "device_type",
    "device_conn_type",
    "C14",
    "C15",
    "C16",
    "C17",
    "C18",
    "C19",
    "C20",
    "C21",
]


def avazu_spec(
    min_count: int = 10, *, split_column: str | None = None, time_column: str | None = None
) -> DatasetSpec:
    """Avazu layout: ``id,click,hour,C1,...`` with every feature categorical (hour as hour-of-day).

    ``time_column="hour"`` orders by the full ``YYMMDDHH`` timestamp (the feature keeps the hour of day).
    """
    return DatasetSpec(
        "avazu",
        "click",
        [FieldSpec(c, "categorical", min_count) for c in AVAZU_CATEGORICAL],
        "id",
        split_column=split_column,
        time_column=time_column,
    )


@dataclass(frozen=True)
class SplitSpec:
    """How rows are assigned to train (0), validation (1) and test (2); see the module docstring."""

    method: str = "hash"
    seed: int = 0
    holdout_last: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in ("hash", "column", "time", "holdout_last"):
            raise ValueError(f"split method must be hash, column, time or holdout_last, got {self.method!r}")
        if self.method == "holdout_last" and (self.holdout_last is None or self.holdout_last < 1):
            raise ValueError(f"data.holdout_last must be a positive number of rows, got {self.holdout_last}")
        if not (
            0 < self.val_fraction < 1
            and 0 < self.test_fraction < 1
            and self.val_fraction + self.test_fraction < 1
        ):
            raise ValueError(
                f"data.val_fraction ({self.val_fraction}) and data.test_fraction ({self.test_fraction}) must be "
                "in (0, 1) with a sum below 1"
            )

    @classmethod
    def from_options(
        cls,
        *,
        seed: int,
        split_column: str | None,
        time_column: str | None,
        holdout_last: int | None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
    ) -> SplitSpec:
        """The split the data options ask for; more than one way at once is a ValueError."""
        chosen = [
            n
            for n, on in (
                ("data.split_column", split_column),
                ("data.time_column", time_column),
                ("data.holdout_last", holdout_last),
            )
            if on
        ]
        if len(chosen) > 1:
            raise ValueError(f"choose one way to split the data, got {' and '.join(chosen)}")
        method = (
            "column"
            if split_column
            else "time"
            if time_column
            else "holdout_last"
            if holdout_last
            else "hash"
        )
        return cls(method, seed, holdout_last, val_fraction, test_fraction)
