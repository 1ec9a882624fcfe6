"""Data loaders that can resume mid-epoch.

Lightning saves and restores the state of any loader that has ``state_dict``/``load_state_dict``;
torchdata's ``StatefulDataLoader`` records how many batches of the current epoch were consumed (and the
sampler/worker state), so a run resumed from a mid-epoch ``last.ckpt`` continues with the next unseen
batch instead of replaying the epoch. Domains build their loaders with :func:`stateful_loader`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset, Sampler


def stateful_loader(
    dataset: Dataset,
    *,
    batch_size: int | None = 1,
    shuffle: bool = False,
    sampler: Sampler | None = None,
    batch_sampler: Sampler | None = None,
    num_workers: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    drop_last: bool = False,
    pin_memory: bool = False,
    persistent_workers: bool = False,
) -> Any:
    """A ``torchdata.stateful_dataloader.StatefulDataLoader`` with the usual DataLoader arguments."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    kwargs: dict[str, Any] = {
        "num_workers": num_workers,
        "collate_fn": collate_fn,
        "pin_memory": pin_memory,
        "persistent_workers": persistent_workers and num_workers > 0,
    }
    if batch_sampler is not None:
        return StatefulDataLoader(dataset, batch_sampler=batch_sampler, **kwargs)
    return StatefulDataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, drop_last=drop_last, **kwargs
    )
