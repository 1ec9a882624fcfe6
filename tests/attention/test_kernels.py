"""The Triton block-sparse FlashAttention kernels.

``interp`` tests run the real kernels under ``TRITON_INTERPRET=1`` on CPU at tiny shapes, forward and
backward, against the ``math`` oracle in float64 with FlashAttention's tolerance rule: the kernel's error
is at most twice the error of the same computation in torch at the kernel's precision, plus a noise floor.
Every output buffer the kernels allocate is poisoned with NaN first, so an element a kernel forgets to write
fails the test. ``gpu`` tests run the same cases at realistic sizes on CUDA (skipped here).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from polyhead.attention.functional import math_attention
from polyhead.attention.layouts import (
    dense_pattern,
    tiled_layout_from_key_lists,
    tiled_layout_from_mask_mod,
    tiled_layout_from_pattern,
)
from polyhead.attention.variants.dma import dma_pattern, dma_select
from polyhead.attention.variants.duo import streaming_block_mask, streaming_mask_mod
from polyhead.attention.variants.halo import halo_mask_mod, halo_pattern
from polyhead.attention.variants.s2 import s2_block_mask, s2_mask_mod
from polyhead.attention.windows import explicit_pattern, group_coords

pytest.importorskip("triton")


def _run_interpreted(case: str) -> dict:
    """Run one case in a fresh Python with ``TRITON_INTERPRET=1`` set before triton is imported.

    (``triton.language`` decides at import time whether its functions are interpreted, so the interpreter
    cannot be switched on inside a pytest process that may already have imported triton.)
    """
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, __file__, case], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _inputs(B, H, Hkv, L, S, D, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, L, D, generator=g).to(dtype).requires_grad_()
    k = torch.randn(B, Hkv, S, D, generator=g).to(dtype).requires_grad_()
    v = torch.randn(B, Hkv, S, D, generator=g).to(dtype).requires_grad_()
    do = torch.randn(B, H, L, D, generator=g).to(dtype)
    return q, k, v, do, g


def _reference(q, k, v, do, *, bias, keep, causal, gate, dtype):
    """Outputs and gradients of the math oracle with every input cast to ``dtype``."""
    leaves = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
    b = None if bias is None else bias.detach().to(dtype).requires_grad_()
    gt = None if gate is None else gate.detach().to(dtype).requires_grad_()
    o, _ = math_attention(*leaves, bias=b, mask=keep, causal=causal)
    if gt is not None:
        o = o * gt[..., None]
    wrt = [*leaves, *(x for x in (b, gt) if x is not None)]
    grads = torch.autograd.grad(o, wrt, do.to(dtype))
    return [o.detach(), *grads]


def _reference_lse(q, k, *, bias, keep, causal, dtype):
    """Natural log-sum-exp of each query's attended scores ``(B, H, L)``, -inf where it sees no key."""
    q, k = q.detach().to(dtype), k.detach().to(dtype)
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias.detach().to(dtype)
    L, S = scores.shape[-2:]
    if causal:
        scores = scores.masked_fill(~torch.ones(L, S, dtype=torch.bool).tril(S - L), float("-inf"))
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    return torch.logsumexp(scores, dim=-1)


def _assert_fa_rule(kernel_vals, low_vals, exact_vals, floor, names):
    for name, kv, lv, ev in zip(names, kernel_vals, low_vals, exact_vals):
        assert not torch.isnan(kv).any(), f"{name}: NaN (an element was not written)"
        err = (kv.double() - ev).abs().max().item()
        ref_err = (lv.double() - ev).abs().max().item()
        assert err <= 2 * ref_err + floor, (
            f"{name}: kernel error {err:.3g} > 2 x torch error {ref_err:.3g} + {floor}"
        )


CASES = {
    # name: B, H, Hkv, L, S, D, dtype, block, pattern kind, causal, key padding, bias shape, gate
    "dense-fp32": (2, 2, 2, 48, 48, 16, torch.float32, 16, None, False, False, None, False),
    "causal-fp16-gqa": (1, 4, 2, 40, 72, 32, torch.float16, 16, None, True, True, None, False),
    "random-layout-bias-gate": (
        2,
        4,
        2,
        50,
        70,
        24,
        torch.float32,
        16,
        "random",
        False,
        True,
        (1, 4, 1, 70),
        True,
    ),
    "halo-bf16-bias": (1, 2, 1, 144, 144, 16, torch.bfloat16, 32, "halo", False, False, (2, 144, 144), False),
    "s2-causal-256": (1, 2, 2, 256, 256, 16, torch.float16, 64, "s2", True, False, None, True),
    # 64-row backward tiles with everything on: GQA, causal with L != S, key padding, a per-batch bias and
    # its gradient, the gate, partial tiles and ragged ends (L, S not multiples of the block)
    "ragged-gqa-bias-64": (
        2,
        4,
        2,
        100,
        130,
        32,
        torch.float16,
        64,
        "random",
        True,
        True,
        (2, 1, 100, 130),
        True,
    ),
}
# "<case>@<arch>:<i>,...": the same case once per variant, with that architecture's launch candidate i first
# for every kernel (flash.launch_configs), so every shipped backward tile shape (sm_80's and sm_90's) runs
# under the interpreter, not only the default one (the interpreter itself reports arch 80)
# ("default" = no change; one child process runs them all, so the oracle is computed once)
ALT_CONFIG_CASES = ["ragged-gqa-bias-64@default,80:1,90:0,90:1"]
INTERP_CASES = [c for c in CASES if not any(a.startswith(c + "@") for a in ALT_CONFIG_CASES)]
FLOORS = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def _pattern(kind, B, H, L, S, g):
    if kind is None:
        return None
    if kind == "random":
        p = torch.rand(B, H, L, S, generator=g) < 0.3
        p[0, 0, 3] = False  # a query that sees nothing: zero output, zero gradients
        return p
    if kind == "halo":
        return halo_pattern(12, 12, 4, 2)[None, None].expand(1, H, L, S)
    if kind == "s2":
        mm = s2_mask_mod(block_size=32, local_blocks=2, vert_stride=4, head_step=1, causal=True)
        return dense_pattern(mm, H, L, S)[None]
    raise AssertionError(kind)


def _interp_case(case: str) -> dict:
    """Child side: run the kernel and the oracles, return per-output errors (NaN-poisoned buffers)."""
    import polyhead.attention.kernels.flash as flash
    from polyhead.attention import kernels

    original = flash._empty_like

    def poisoned(t, dtype=None, shape=None):
        out = original(t, dtype, shape)
        return out.fill_(float("nan")) if out.is_floating_point() else out

    flash._empty_like = poisoned
    case, _, variants = case.partition("@")
    B, H, Hkv, L, S, D, dtype, block, kind, causal, kpm, bias_shape, use_gate = CASES[case]
    q, k, v, do, g = _inputs(B, H, Hkv, L, S, D, dtype, seed=len(case))
    pattern = _pattern(kind, B, H, L, S, g)
    layout = None if pattern is None else tiled_layout_from_pattern(pattern, block, block)
    mask = (torch.rand(B, S, generator=g) > 0.25) if kpm else None
    bias = None if bias_shape is None else torch.randn(*bias_shape, generator=g).to(dtype).requires_grad_()
    gate = torch.rand(B, H, L, generator=g).to(dtype).requires_grad_() if use_gate else None
    wrt = [q, k, v, *(x for x in (bias, gate) if x is not None)]
    configs, arch = flash.launch_configs, flash._arch
    runs = {}
    for variant in variants.split(",") if variants else [""]:
        if variant and variant != "default":  # "<arch>:<i>": that arch's launch candidate i first
            cc, i = (int(x) for x in variant.split(":"))

            def rotated(*a, i=i, **kw):
                cands = configs(*a, **kw)
                return cands[i % len(cands) :] + cands[: i % len(cands)]

            flash.launch_configs, flash._arch = rotated, (lambda device, cc=cc: cc)
        out, lse = kernels.attention(
            q, k, v, bias=bias, mask=mask, block_mask=layout, causal=causal, gate=gate, return_lse=True
        )
        runs[variant] = (out, lse, torch.autograd.grad(out, wrt, do))
        flash.launch_configs, flash._arch = configs, arch

    keep = pattern
    if mask is not None:
        keep = mask[:, None, None, :] if keep is None else keep & mask[:, None, None, :]
    exact = _reference(q, k, v, do, bias=bias, keep=keep, causal=causal, gate=gate, dtype=torch.float64)
    low = _reference(q, k, v, do, bias=bias, keep=keep, causal=causal, gate=gate, dtype=dtype)
    names = [
        "out",
        "dq",
        "dk",
        "dv",
        *(["dbias"] if bias is not None else []),
        *(["dgate"] if gate is not None else []),
    ]
    # log-sum-exp: -inf exactly where a query sees no key, the FA rule elsewhere
    lse_exact = _reference_lse(q, k, bias=bias, keep=keep, causal=causal, dtype=torch.float64)
    lse_low = _reference_lse(q, k, bias=bias, keep=keep, causal=causal, dtype=dtype)
    seen = torch.isfinite(lse_exact)
    reports = {}
    for variant, (out, lse, grads) in runs.items():
        report = {}
        for name, kv, lv, ev in zip(names, [out, *grads], low, exact):
            report[name] = {
                "nan": bool(torch.isnan(kv).any()),
                "err": (kv.double() - ev).abs().max().item(),
                "ref_err": (lv.double() - ev).abs().max().item(),
            }
        report["lse"] = {
            "nan": bool(torch.isnan(lse).any()) or not torch.equal(torch.isfinite(lse), seen),
            "err": (lse.double() - lse_exact)[seen].abs().max().item(),
            "ref_err": (lse_low.double() - lse_exact)[seen].abs().max().item(),
        }
        if kind == "random":  # query 3 of (0, 0) sees no key
            report["empty_row_zero"] = bool((out[0, 0, 3] == 0).all() and (grads[0][0, 0, 3] == 0).all())
        reports[variant or "default"] = report
    return reports


@pytest.mark.interp
@pytest.mark.parametrize("case", [*INTERP_CASES, *ALT_CONFIG_CASES])
def test_kernel_matches_float64_oracle(case: str) -> None:
    reports = _run_interpreted(case)
    floor = FLOORS[CASES[case.partition("@")[0]][6]]
    assert len(reports) == max(1, len(case.partition("@")[2].split(",")))
    for variant, report in reports.items():
        for name, r in report.items():
            if name == "empty_row_zero":
                assert r, f"{variant}: a query with no visible key must get zero output and zero gradient"
                continue
            assert not r["nan"], f"{variant} {name}: NaN (an element was not written)"
            assert r["err"] <= 2 * r["ref_err"] + floor, (
                f"{variant} {name}: kernel error {r['err']:.3g} > 2 x torch error {r['ref_err']:.3g} + {floor}"
            )


# Blocks of 32 (fp32) and 64 (fp16) are wider than the kernels' sub-tiles (16 and 32): those cases
# exercise the sub-tiled loops of every kernel.

# ---- layouts: the kernel's block lists give exactly the variants' attended pairs ------------------------


def test_layouts_match_variant_patterns() -> None:
    # halo (HaloNet): 12 x 12 image, block 4, halo 2
    lay = tiled_layout_from_mask_mod(halo_mask_mod(12, 12, 4, 2), 1, 144, 144, 16, 16)
    assert torch.equal(lay.dense()[0, 0], halo_pattern(12, 12, 4, 2))
    assert lay.density < 1

    # S2-Attention with its closed-form block rule (no block scan), 4 heads with shifted strides
    H, L, bs = 4, 256, 16
    mm = s2_mask_mod(block_size=bs, local_blocks=2, vert_stride=4, head_step=1, causal=True)
    rule = s2_block_mask(H, L // bs, L // bs, local_blocks=2, vert_stride=4, head_step=1, causal=True)
    lay = tiled_layout_from_mask_mod(mm, H, L, L, bs, bs, block_mask=rule)
    assert torch.equal(lay.dense()[0], dense_pattern(mm, H, L, L))

    # sliding window + attention sinks (DuoAttention streaming heads), queries end-aligned (decoding)
    L, S, sink, recent = 64, 160, 8, 24
    mm = streaming_mask_mod(sink, recent, q_offset=S - L)
    rule = streaming_block_mask(L // 16, S // 16, 16, sink, recent)
    lay = tiled_layout_from_mask_mod(mm, 1, L, S, 16, 16, block_mask=rule)
    assert torch.equal(lay.dense()[0, 0], dense_pattern(mm, 1, L, S)[0])
    assert int(lay.counts.max()) <= 4  # the sink block + 3 window blocks per query block, not S / 16 = 10

    # MaxViT block and grid attention on a 16 x 16 grid, window 4
    for kind in ("block", "grid"):
        gid, _ = group_coords(16, 16, 4, kind, torch.device("cpu"))

        def group_mod(b, h, q_idx, kv_idx, gid=gid):
            return gid[q_idx] == gid[kv_idx]

        lay = tiled_layout_from_mask_mod(group_mod, 1, 256, 256, 16, 16)
        assert torch.equal(lay.dense()[0, 0], explicit_pattern(16, 16, 4, kind))

    # DMA: top-w keys per query from the value-derived bias, causal, with key padding
    g = torch.Generator().manual_seed(0)
    bias = torch.randn(2, 3, 80, generator=g)
    pad = torch.ones(2, 80, dtype=torch.bool)
    pad[1, 60:] = False
    idx, valid = dma_select(bias, 80, 12, causal=True, key_padding=pad)
    lay = tiled_layout_from_key_lists(idx, valid, 80, 16, 16)
    assert torch.equal(lay.dense(), dma_pattern(bias, 80, 12, causal=True, key_padding=pad))


def test_layout_keeps_only_distinct_partial_tiles() -> None:
    # causal at L = 1024, blocks of 16: the 64 diagonal blocks are partial and share one tile, the rest are full
    L = 1024
    lay = tiled_layout_from_mask_mod(lambda b, h, q, k: k <= q, 1, L, L, 16, 16)
    assert lay.n_partial == 64 and tuple(lay.tiles.shape) == (1, 16, 16)
    assert torch.equal(lay.tiles[0], torch.ones(16, 16, dtype=torch.bool).tril())
    assert torch.equal(lay.dense()[0, 0], torch.ones(L, L, dtype=torch.bool).tril())
    # ragged ends (L, S not multiples of the block): blocks whose in-range pairs are all visible are full
    lay = tiled_layout_from_mask_mod(lambda b, h, q, k: (q >= 0) & (k >= 0), 2, 50, 70, 16, 16)
    assert lay.tile_ids is None and int(lay.counts.sum()) == 2 * 4 * 5
    # a table-driven mask_mod is only evaluated in range (q < L, k < S)
    gid = torch.arange(50) // 7
    lay = tiled_layout_from_mask_mod(lambda b, h, q, k: gid[q] == gid[k], 1, 50, 50, 16, 16)
    assert torch.equal(lay.dense()[0, 0], gid[:, None] == gid[None, :])


def test_transposed_layout_lists_every_block_once() -> None:
    g = torch.Generator().manual_seed(1)
    lay = tiled_layout_from_pattern(torch.rand(2, 3, 70, 90, generator=g) < 0.2, 16, 16)
    q_blocks, slots, counts = lay.transposed()
    assert int(counts.sum()) == int(lay.counts.sum())
    for b, h, kb in [(0, 0, 0), (1, 2, 3), (0, 1, 5)]:
        listed = {int(q_blocks[b, h, kb, t]) for t in range(int(counts[b, h, kb]))}
        expect = {
            i for i in range(lay.n_q_blocks) if kb in lay.indices[b, h, i, : lay.counts[b, h, i]].tolist()
        }
        assert listed == expect
        for t in range(int(counts[b, h, kb])):
            assert int(lay.indices[b, h, q_blocks[b, h, kb, t], slots[b, h, kb, t]]) == kb


# ---- dispatch and bad input -----------------------------------------------------------------------------


def test_unsupported_inputs_name_the_backend_to_use() -> None:
    from polyhead.attention import functional, kernels

    q = torch.randn(1, 2, 8, 16)
    with pytest.raises(ValueError, match="needs CUDA tensors; use 'sdpa'"):
        functional.attention(q, q, q, backend="triton")
    assert not kernels.supports(q)
    assert functional.select_backend(q, bias=None, mask=None, block_mask=None, need_weights=False) == "sdpa"


def test_tiled_layout_through_functional_attention_without_the_kernel() -> None:
    from polyhead.attention import functional

    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 3, 40, 16, generator=g) for _ in range(3))
    pattern = torch.rand(1, 3, 40, 40, generator=g) < 0.3
    lay = tiled_layout_from_pattern(pattern, 16, 16)
    assert functional.select_backend(q, bias=None, mask=None, block_mask=lay, need_weights=False) == "math"
    out = functional.attention(q, k, v, block_mask=lay)
    ref, _ = math_attention(q, k, v, mask=pattern)
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match="use 'triton' or 'math'"):
        functional.attention(q, k, v, block_mask=lay, backend="flex")


def test_check_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    from polyhead.attention import kernels as interp

    monkeypatch.setenv("TRITON_INTERPRET", "1")  # check() then accepts CPU tensors (no kernel runs here)
    q = torch.randn(1, 2, 32, 16)
    with pytest.raises(ValueError, match=r"float16/bfloat16/float32.*use 'math'"):
        interp.check(q.double())
    with pytest.raises(ValueError, match=r"head dims 16-128.*use 'sdpa'"):
        interp.check(torch.randn(1, 2, 32, 12))
    with pytest.raises(ValueError, match="float32 up to head dim 64"):
        interp.check(torch.randn(1, 2, 32, 128))
    with pytest.raises(ValueError, match="use 'flex' or 'math'"):
        interp.check(q, mask=torch.ones(1, 2, 32, 32, dtype=torch.bool))
    lay = tiled_layout_from_pattern(torch.ones(1, 3, 32, 32, dtype=torch.bool), 16, 16)
    with pytest.raises(ValueError, match="does not fit"):
        interp.check(q, q, block_mask=lay)
    with pytest.raises(ValueError, match=r"key-padding mask must be \(B, S\)"):
        interp.check(q, q, mask=torch.ones(1, 31, dtype=torch.bool))
    with pytest.raises(ValueError, match="gate must be broadcastable"):
        interp.check(q, q, gate=torch.ones(1, 3, 32))
    lay8 = tiled_layout_from_pattern(torch.ones(1, 2, 32, 32, dtype=torch.bool), 8, 8)
    with pytest.raises(ValueError, match="block sizes"):
        interp.check(q, q, block_mask=lay8)


# ---- realistic sizes on CUDA ------------------------------------------------------------------------------

GPU_CASES = {
    "dense-bf16-d128": (2, 8, 8, 2048, 2048, 128, torch.bfloat16, 64, None, False, True, None, False),
    "causal-fp16-gqa-d64": (2, 16, 4, 4096, 4096, 64, torch.float16, 64, None, True, False, None, False),
    "s2-bf16-gate": (1, 8, 8, 4096, 4096, 64, torch.bfloat16, 64, "s2", True, False, None, True),
    "halo-fp32-bias": (
        4,
        4,
        4,
        1024,
        1024,
        32,
        torch.float32,
        64,
        "halo",
        False,
        False,
        (4, 1024, 1024),
        False,
    ),
}


GPU_CASES["ragged-gqa-bias-gate"] = (
    2, 8, 2, 1000, 1100, 64, torch.float16, 64, None, True, True, (2, 1, 1000, 1100), True,
)  # fmt: skip
# "<case>@<i>": every kernel's launch candidate i, untimed (the plain cases run the autotuned choice; the
# first call of a shape class times the candidates, and the bias gradient must not keep the timing runs' sums)
GPU_ALT_CASES = ["ragged-gqa-bias-gate@1", "causal-fp16-gqa-d64@1", "s2-bf16-gate@1"]


@pytest.mark.gpu
@pytest.mark.parametrize("case", [*GPU_CASES, *GPU_ALT_CASES])
def test_kernel_on_gpu(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from polyhead.attention import kernels
    from polyhead.attention.kernels import flash

    case, _, alt = case.partition("@")
    if alt:
        configs = flash.launch_configs

        def rotated(*a, **kw):
            cands = configs(*a, **kw)
            return cands[int(alt) % len(cands) :] + cands[: int(alt) % len(cands)]

        monkeypatch.setattr(flash, "launch_configs", rotated)
        monkeypatch.setattr(flash, "_pick", lambda key, cands, run, device: cands[0])
    B, H, Hkv, L, S, D, dtype, block, kind, causal, kpm, bias_shape, use_gate = GPU_CASES[case]
    dev = torch.device("cuda")
    q, k, v, do, g = _inputs(B, H, Hkv, L, S, D, dtype, seed=1)
    q, k, v = (t.detach().to(dev).requires_grad_() for t in (q, k, v))
    do = do.to(dev)
    if kind == "s2":
        mm = s2_mask_mod(block_size=block, local_blocks=4, vert_stride=8, head_step=1, causal=True)
        layout = tiled_layout_from_mask_mod(mm, H, L, S, block, block, device=dev)
        pattern = dense_pattern(mm, H, L, S, device=dev)[None]
    elif kind == "halo":
        side = math.isqrt(L)
        layout = tiled_layout_from_mask_mod(
            halo_mask_mod(side, side, 8, 4), 1, L, S, block, block, device=dev
        )
        pattern = halo_pattern(side, side, 8, 4, device=dev)[None, None]
    else:
        layout = pattern = None
    mask = (torch.rand(B, S, device=dev) > 0.1) if kpm else None
    bias = None if bias_shape is None else torch.randn(*bias_shape, device=dev, dtype=dtype).requires_grad_()
    gate = torch.rand(B, H, L, device=dev, dtype=dtype).requires_grad_() if use_gate else None
    out = kernels.attention(q, k, v, bias=bias, mask=mask, block_mask=layout, causal=causal, gate=gate)
    wrt = [q, k, v, *(x for x in (bias, gate) if x is not None)]
    grads = torch.autograd.grad(out, wrt, do)
    keep = pattern
    if mask is not None:
        keep = mask[:, None, None, :] if keep is None else keep & mask[:, None, None, :]
    exact = _reference(q, k, v, do, bias=bias, keep=keep, causal=causal, gate=gate, dtype=torch.float64)
    # fp32: the kernel's 3xTF32 dots are held to torch's fp32 matmuls (TF32 off, torch's default)
    tf32, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, False
    try:
        low = _reference(q, k, v, do, bias=bias, keep=keep, causal=causal, gate=gate, dtype=dtype)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    names = [
        "out",
        "dq",
        "dk",
        "dv",
        *(["dbias"] if bias is not None else []),
        *(["dgate"] if gate is not None else []),
    ]
    _assert_fa_rule([out, *grads], low, exact, FLOORS[dtype], names)


if __name__ == "__main__":  # the interpreter child of test_kernel_matches_float64_oracle
    print(json.dumps(_interp_case(sys.argv[1])))


def test_autotuner_times_each_candidate_once_and_caches_the_fastest(monkeypatch: pytest.MonkeyPatch) -> None:
    import triton.testing
    from triton.runtime.errors import OutOfResources

    from polyhead.attention.kernels import flash

    times = {1: 0.5, 2: 0.2, 3: None}  # candidate 3 does not fit the device

    def fake_bench(fn, warmup, rep):
        return fn()

    def run(cfg):
        if times[cfg["id"]] is None:
            raise OutOfResources(1, 0, "shared memory")
        ran.append(cfg["id"])
        return times[cfg["id"]]

    monkeypatch.setattr(triton.testing, "do_bench", fake_bench)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)  # no CUDA here
    monkeypatch.setattr(flash, "_TUNED", {})
    monkeypatch.setattr(flash, "_TUNE_TIMES", {})
    cuda, cands, ran = torch.device("cuda"), [{"id": 1}, {"id": 2}, {"id": 3}], []
    assert flash._pick(("k",), cands, run, cuda) == {"id": 2} and ran == [1, 2]
    assert flash._pick(("k",), cands, run, cuda) == {"id": 2} and ran == [1, 2]  # cached, not timed again
    assert flash.tuned_choices() == [
        {"key": ["k"], "chosen": {"id": 2}, "timed_ms": [[{"id": 1}, 0.5], [{"id": 2}, 0.2]]}
    ]
    # off the GPU (the interpreter) the first candidate, untimed
    assert flash._pick(("other",), cands, run, torch.device("cpu")) == {"id": 1} and ran == [1, 2]
    with pytest.raises(RuntimeError, match="no launch setting"):
        flash._pick(("none",), [{"id": 3}, {"id": 3}], run, cuda)


def test_auto_never_sends_mixed_dtypes_to_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """rel_mha under bf16 autocast gives a float32 query and bfloat16 keys: auto must not pick 'triton'."""
    from polyhead.attention import functional

    monkeypatch.setattr(functional, "select_backend", lambda *a, **k: "triton")
    q = torch.randn(1, 2, 8, 16)
    k = torch.randn(1, 2, 8, 16, dtype=torch.bfloat16)
    calls = []
    monkeypatch.setattr(functional, "_sdpa", lambda *a, **kw: calls.append("sdpa") or a[0])
    functional.attention(q, k, k, backend="auto")
    assert calls == ["sdpa"]
