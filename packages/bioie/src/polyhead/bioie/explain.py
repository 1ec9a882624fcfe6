"""What AGGCN's attention learnt: each head's soft adjacency drawn over a sentence beside its dependency tree,
and how much of each head's attention mass falls on tree neighbours (versus what uniform attention over
the sentence would put there), written to ``explain.json`` and ``media/`` (and W&B) after ``test``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polyhead.bioie.data.encoding import collate


def tree_mass(adj: Tensor, tree: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per head: share of attention mass on tree neighbours, and the share uniform attention would give.

    Args:
        adj: ``(B, H, L, L)`` attention adjacencies (rows sum to 1 over real tokens).
        tree: ``(B, L, L)`` 0/1 undirected dependency adjacency.
        mask: ``(B, L)`` real tokens.
    """
    rows = mask.float()  # queries that count
    on_tree = (adj * tree[:, None]).sum(-1)  # (B, H, L)
    share = (on_tree * rows[:, None]).sum((0, 2)) / rows.sum()
    lengths = mask.sum(-1, keepdim=True).float()  # (B, 1)
    uniform = ((tree.sum(-1) / lengths) * rows).sum() / rows.sum()
    return share, uniform


@torch.no_grad()
def explain_run(module: Any, dm: Any, out_dir: Path, *, max_examples: int = 512) -> dict:
    net = module.net
    was_training = net.training
    net.eval()
    examples = dm.examples["test"][:max_examples]
    items = [module.encoder.encode(e) for e in examples]
    shares, uniforms, weights = [], [], []
    for start in range(0, len(items), 64):
        chunk = items[start : start + 64]
        batch = {k: v.to(module.device) if isinstance(v, Tensor) else v for k, v in collate(chunk).items()}
        _, adjs = net(batch, return_adjacency=True)
        s, u = tree_mass(adjs[0], batch["tree_adj"], batch["mask"])
        shares.append(s * len(chunk))
        uniforms.append(u * len(chunk))
        weights.append(len(chunk))
    n = sum(weights)
    share = (torch.stack(shares).sum(0) / n).tolist()
    uniform = float(torch.stack(uniforms).sum() / n)
    result = {"tree_mass_per_head": share, "uniform_tree_mass": uniform, "examples": n,
              "heads_following_tree": [h for h, v in enumerate(share) if v > 2 * uniform]}  # fmt: skip
    (out_dir / "explain.json").write_text(json.dumps(result, indent=1) + "\n")
    pos = next((i for i, e in enumerate(examples) if e.relation != "no_relation"), 0)
    _figure(module, examples[pos], items[pos])
    if was_training:
        net.train()
    return result


def _figure(module: Any, example: Any, item: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polyhead.train import log_figure

    batch = {k: v.to(module.device) if isinstance(v, Tensor) else v for k, v in collate([item]).items()}
    _, adjs = module.net(batch, return_adjacency=True)
    adj = adjs[0][0].float().cpu()  # (H, L, L)
    tree = batch["tree_adj"][0].cpu()
    toks = list(example.tokens)
    for a, b, tag in ((example.subj_start, example.subj_end, "S"), (example.obj_start, example.obj_end, "O")):
        for i in range(a, b + 1):
            toks[i] = f"[{tag}] {toks[i]}"
    heads = adj.shape[0]
    fig, axes = plt.subplots(1, heads + 1, figsize=(4.2 * (heads + 1), 4.6))
    panels = [("dependency tree", tree)] + [(f"head {h}", adj[h]) for h in range(heads)]
    for ax, (title, m) in zip(axes, panels):
        ax.imshow(m.numpy(), cmap="viridis")
        ax.set_title(title)
        ax.set_xticks(range(len(toks)), toks, rotation=90, fontsize=6)
        ax.set_yticks(range(len(toks)), toks, fontsize=6)
    fig.suptitle(f"AGGCN soft adjacencies (first attention-guided block); gold: {example.relation}")
    fig.tight_layout()
    log_figure(module.trainer, "explain_attention_adjacency", fig)
