"""``auto`` dispatch on CPU: few keys go to the fused kernel (where built) or, in half precision with a mask,
to the plain product; every choice stays correct."""

from __future__ import annotations

import pytest
import torch

from polyhead.attention import cpu, functional
from polyhead.attention.functional import (
    CPU_FUSED_MAX_KEYS,
    CPU_HALF_MATH_MAX_KEYS,
    attention,
    math_attention,
    select_backend,
)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("S", [39, CPU_HALF_MATH_MAX_KEYS, CPU_HALF_MATH_MAX_KEYS + 1])
def test_cpu_auto_backend_by_dtype_and_key_length(dtype: torch.dtype, S: int) -> None:
    q = torch.randn(2, 2, 5, 8).to(dtype)
    got = select_backend(q, bias=None, mask=None, block_mask=None, need_weights=False, kv_len=S)
    half = dtype in (torch.bfloat16, torch.float16)
    assert got == ("math" if half and S <= CPU_HALF_MATH_MAX_KEYS else "sdpa")
    # without the key length (older callers) the choice is the float32 one
    assert select_backend(q, bias=None, mask=None, block_mask=None, need_weights=False) == "sdpa"


@pytest.fixture
def fused_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's measured choice pinned to "a fused kernel is faster up to CPU_FUSED_MAX_KEYS keys": these
    tests check the dispatch rule, not the measurement (a measurement taken while the test workers load the
    machine can rightly find no kernel faster; tests/attention/test_cpu_kernel.py tests the measurement)."""
    built = cpu.kernels()
    choice = {"kernel": built[0] if built else None, "max_keys": CPU_FUSED_MAX_KEYS if built else 0, "ms": {}}
    monkeypatch.setattr(cpu, "choice", lambda: choice)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("S", [39, CPU_FUSED_MAX_KEYS, CPU_FUSED_MAX_KEYS + 1])
@pytest.mark.usefixtures("fused_wins")
def test_cpu_auto_picks_the_fused_kernel_for_short_unmasked_inputs(dtype: torch.dtype, S: int) -> None:
    q = torch.randn(2, 2, 5, 8).to(dtype)
    kw = {"bias": None, "block_mask": None, "need_weights": False, "kv_len": S}
    fused = cpu.available() and dtype != torch.float16 and S <= CPU_FUSED_MAX_KEYS
    got = select_backend(q, mask=None, kv_heads=2, **kw)
    assert (got == "cpu") == fused
    # a mask, a causal flag, GQA or wanted weights keep the other backends
    assert select_backend(q, mask=torch.ones(2, S, dtype=torch.bool), kv_heads=2, **kw) != "cpu"
    assert select_backend(q, mask=None, kv_heads=2, causal=True, **kw) != "cpu"
    assert select_backend(q, mask=None, kv_heads=1, **kw) != "cpu"
    assert select_backend(q, mask=None, kv_heads=2, **{**kw, "need_weights": True}) == "math"


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.usefixtures("fused_wins")
def test_half_precision_auto_matches_the_float64_reference(
    masked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    B, H, L, S, D = 3, 2, 7, 39, 8
    q, k, v = torch.randn(B, H, L, D), torch.randn(B, H, S, D), torch.randn(B, H, S, D)
    mask = torch.rand(B, S) < 0.7 if masked else None
    if mask is not None:
        mask[:, 0] = True
    ref, _ = math_attention(q.double(), k.double(), v.double(), mask=mask)
    used = []
    real_math, real_fused = functional.math_attention, cpu.short_attention
    monkeypatch.setattr(
        functional, "math_attention", lambda *a, **kw: used.append("math") or real_math(*a, **kw)
    )
    monkeypatch.setattr(cpu, "short_attention", lambda *a, **kw: used.append("cpu") or real_fused(*a, **kw))
    out = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask=mask)
    assert used == ["cpu" if cpu.available() and not masked else "math"] and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), ref, atol=3e-2, rtol=3e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: float32 inputs, bf16 products
        out_ac = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask=mask)
    torch.testing.assert_close(out_ac.double(), ref, atol=3e-2, rtol=3e-2)


# ---- CUDA block masks: the measured rule (kernel vs FlexAttention) --------------------------------------

# The H200 figures of issue 22 (ms, B 1, H 16, D 64, bf16; the kernel with 16-row backward slices), as a
# fixed table: the rule's mechanics are tested against it whatever measured.json holds later.
SEED = {
    "tables": [
        {
            "device": "NVIDIA H200",
            "capability": [9, 0],
            "rows": [
                {"L": 4096, "pattern": "dense-causal", "block_density": 0.5156, "per_head": False,
                 "ms": {"fwd": {"triton": 0.23, "flex": 0.14, "sdpa": 0.19},
                        "fwd_bwd": {"triton": 2.21, "flex": 0.52, "sdpa": 0.64}}},
                {"L": 4096, "pattern": "s2-stride4", "block_density": 0.3032, "per_head": True,
                 "ms": {"fwd": {"triton": 0.13, "flex": 0.16}, "fwd_bwd": {"triton": 0.91, "flex": 0.52}}},
                {"L": 16384, "pattern": "s2-stride16", "block_density": 0.0833, "per_head": True,
                 "ms": {"fwd": {"triton": 0.28, "flex": 0.50}, "fwd_bwd": {"triton": 3.61, "flex": 1.90}}},
                {"L": 16384, "pattern": "window+sinks", "block_density": 0.0826, "per_head": False,
                 "ms": {"fwd": {"triton": 0.43, "flex": 0.28}, "fwd_bwd": {"triton": 5.54, "flex": 1.45}}},
            ],
        }
    ]
}  # fmt: skip
for _row in SEED["tables"][0]["rows"]:
    _row.update(head_dim=64, dtype="bf16", key_padding=False)


def _s2_block_mask(L: int, H: int, stride: int, block: int = 128):
    """A FlexAttention BlockMask of the benchmark's S2 pattern (64-token S2 blocks) at 128 x 128 blocks."""
    from torch.nn.attention.flex_attention import BlockMask

    from polyhead.attention.variants.s2 import s2_block_mask, s2_mask_mod

    n = L // 64
    fine = s2_block_mask(H, n, n, local_blocks=4, vert_stride=stride, head_step=1, causal=True)
    coarse = fine.view(H, n // 2, 2, n // 2, 2).any(4).any(2)[None]  # (1, H, nq, nk) at 128
    num = coarse.sum(-1).to(torch.int32)
    idx = torch.argsort((~coarse).to(torch.int8), dim=-1, stable=True).to(torch.int32)
    mm = s2_mask_mod(block_size=64, local_blocks=4, vert_stride=stride, head_step=1, causal=True)
    return BlockMask.from_kv_blocks(num, idx, BLOCK_SIZE=block, mask_mod=mm, seq_lengths=(L, L))


def _causal_block_mask(L: int, block: int = 128):
    from torch.nn.attention.flex_attention import BlockMask

    n = L // block
    coarse = torch.ones(n, n, dtype=torch.bool).tril()[None, None]
    num = coarse.sum(-1).to(torch.int32)
    idx = torch.argsort((~coarse).to(torch.int8), dim=-1, stable=True).to(torch.int32)
    return BlockMask.from_kv_blocks(
        num, idx, BLOCK_SIZE=block, mask_mod=lambda b, h, q, k: k <= q, seq_lengths=(L, L)
    )


def _choice(q, block_mask, *, grad, device=("NVIDIA H200", (9, 0)), triton_ok=True, bias=None, mask=None,
            kv_heads=None, table=SEED):  # fmt: skip
    return functional._cuda_block_mask_backend(
        q, bias=bias, mask=mask, block_mask=block_mask, kv_len=q.shape[2],
        kv_heads=q.shape[1] if kv_heads is None else kv_heads, requires_grad=grad, triton_ok=triton_ok,
        device_name=device[0], capability=device[1], table=table,
    )  # fmt: skip


def test_block_mask_features_of_a_flex_block_mask() -> None:
    from polyhead.attention.kernels import measured

    f = measured.block_mask_features(_s2_block_mask(4096, 16, 4))
    assert f["per_head"] and abs(f["block_density"] - 0.3032) < 1e-3
    f = measured.block_mask_features(_causal_block_mask(4096))
    assert not f["per_head"] and abs(f["block_density"] - 33 / 64) < 1e-6


def test_measured_rule_on_the_h200_figures() -> None:
    q = torch.randn(1, 16, 4096, 64, dtype=torch.bfloat16)
    s2, causal = _s2_block_mask(4096, 16, 4), _causal_block_mask(4096)
    # today's kernel: forward only -> the kernel on S2 (0.13 vs 0.16 ms), training -> FlexAttention
    assert _choice(q, s2, grad=False) == "triton"
    assert _choice(q, s2, grad=True) == "flex"
    assert _choice(q, causal, grad=False) == "flex" and _choice(q, causal, grad=True) == "flex"
    # the same SM (H100: capability 9.0) uses the H200's figures; an A100 has none: the default
    assert _choice(q, s2, grad=False, device=("NVIDIA H100 80GB HBM3", (9, 0))) == "triton"
    assert _choice(q, s2, grad=False, device=("NVIDIA A100-SXM4-80GB", (8, 0))) == "flex"
    # what no row describes goes to FlexAttention: other dtype, head dim, length, bias, key padding, GQA
    assert _choice(q.half(), s2, grad=False) == "flex"
    assert _choice(q[..., :32], s2, grad=False) == "flex"
    q1k = torch.randn(1, 16, 1024, 64, dtype=torch.bfloat16)
    assert _choice(q1k, _s2_block_mask(1024, 16, 4), grad=False) == "flex"
    assert _choice(q, s2, grad=False, bias=torch.zeros(1, 16, 1, 4096)) == "flex"
    assert _choice(q, s2, grad=False, mask=torch.ones(1, 4096, dtype=torch.bool)) == "flex"
    assert _choice(q, s2, grad=False, kv_heads=4) == "flex"
    # a kernel the inputs do not fit never gets the call
    assert _choice(q, s2, grad=False, triton_ok=False) == "flex"
    # S2 at 16k and stride 16 (density 0.083, per head) is told apart from window + sinks (0.083, shared)
    q16 = torch.randn(1, 16, 16384, 64, dtype=torch.bfloat16)
    assert _choice(q16, _s2_block_mask(16384, 16, 16), grad=False) == "triton"


def test_tiled_layouts_stay_on_the_kernel_or_the_oracle() -> None:
    from polyhead.attention.layouts import tiled_layout_from_pattern

    q = torch.randn(1, 2, 32, 16)
    lay = tiled_layout_from_pattern(torch.ones(1, 2, 32, 32, dtype=torch.bool).tril(), 16, 16)
    assert _choice(q, lay, grad=True) == "triton"
    assert _choice(q, lay, grad=False, triton_ok=False) == "math"


def test_the_shipped_table_drives_the_rule() -> None:
    """Every row of measured.json, asked about itself, gets its fastest backend, in both modes."""
    from polyhead.attention.kernels import measured

    table = measured.load_table()
    assert table["tables"], "measured.json holds no device"
    for t in table["tables"]:
        assert {"device", "capability", "date", "command", "rows"} <= set(t)
        for row in t["rows"]:
            feats = {"S": row["L"], "bias": False, "gqa": False, **row}
            for grad, mode in ((False, "fwd"), (True, "fwd_bwd")):
                ms = {b: v for b, v in row["ms"][mode].items() if b in ("triton", "flex")}
                got = measured.choose(
                    feats, grad=grad, candidates=("triton", "flex"), device_name=t["device"],
                    capability=tuple(t["capability"]), table=table,
                )  # fmt: skip
                assert got == min(ms, key=ms.get), (t["device"], row["pattern"], row["L"], mode)
                # auto is never slower than the best measured backend by more than 10 %
                assert ms[got] <= 1.1 * min(row["ms"][mode].values()) or "sdpa" in row["ms"][mode]


def test_auto_tells_select_backend_whether_gradients_are_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = functional.select_backend
    monkeypatch.setattr(
        functional, "select_backend", lambda *a, **kw: seen.append(kw["requires_grad"]) or real(*a, **kw)
    )
    q = torch.randn(1, 2, 8, 16)
    k = torch.randn(1, 2, 8, 16, requires_grad=True)
    attention(q, k, k)
    with torch.no_grad():
        attention(q, k, k)
    attention(q, k.detach(), k.detach())
    assert seen == [True, False, False]


@pytest.mark.gpu
def test_auto_on_cuda_follows_the_table_for_the_call_mode() -> None:
    """On a GPU: auto picks what the shipped table says for a forward-only and a training call with an S2
    BlockMask, and both paths give the same output."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from polyhead.attention import kernels
    from polyhead.attention.kernels import measured

    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    q, k, v = (torch.randn(1, 16, 4096, 64, device=dev, dtype=torch.bfloat16, generator=g) for _ in range(3))
    bm = _s2_block_mask(4096, 16, 4).to(dev)
    feats = measured.call_features(q, kv_len=4096, kv_heads=16, block_mask=bm, key_padding=False, bias=False)
    name, cap = torch.cuda.get_device_name(), torch.cuda.get_device_capability()
    ok = kernels.supports(q, block_mask=bm)
    kw = {"candidates": ("triton", "flex"), "device_name": name, "capability": cap}
    want = {
        grad: (measured.choose(feats, grad=grad, **kw) or "flex") if ok else "flex" for grad in (False, True)
    }
    sel = {
        "bias": None,
        "mask": None,
        "block_mask": bm,
        "need_weights": False,
        "kv_len": 4096,
        "kv_heads": 16,
    }
    with torch.no_grad():
        assert select_backend(q, **sel) == want[False]
        out_f = attention(q, k, v, block_mask=bm)
    qg = q.clone().requires_grad_()
    assert select_backend(qg, **sel) == want[True]
    out_fb = attention(qg, k, v, block_mask=bm)
    out_fb.float().square().mean().backward()
    assert qg.grad is not None and torch.isfinite(qg.grad).all()
    torch.testing.assert_close(out_f.float(), out_fb.detach().float(), atol=2e-2, rtol=2e-2)


@pytest.mark.slow
def test_torch_compile_of_mha_on_cpu_matches_eager() -> None:
    """A compiled ``mha`` layer traces on CPU (``auto`` keeps the fused kernel, whose ops have no fake-tensor
    rules, and ``split_last``'s storage checks out of the graph) and gives eager's output and gradients."""
    from polyhead.attention import create_attention

    torch.manual_seed(3)
    m = create_attention("mha", dim=16, num_heads=2)
    x = torch.randn(4, 39, 16)
    out = torch.compile(m)(x).output
    out.pow(2).sum().backward()
    compiled = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    ref = m(x).output
    ref.pow(2).sum().backward()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for n, p in m.named_parameters():
        torch.testing.assert_close(compiled[n], p.grad, atol=1e-4, rtol=1e-4)
