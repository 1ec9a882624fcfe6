"""The fused CPU attention kernels (``polyhead.attention.cpu``: the AVX-512 one and the portable at::vec one,
each test run on every kernel built here) against the float64 math oracle; the measured ``auto`` choice."""

from __future__ import annotations

import pytest
import torch

from polyhead.attention import cpu, functional
from polyhead.attention.functional import attention, math_attention

pytestmark = pytest.mark.skipif(
    not cpu.available(), reason="fused CPU kernel not built here (needs a C++ compiler)"
)


REAL_CHOICE = cpu.choice


@pytest.fixture(autouse=True, params=cpu.kernels() if cpu.available() else ["none"])
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Route backend="cpu" and auto through one built kernel (instead of the machine's measured choice)."""
    monkeypatch.setattr(cpu, "choice", lambda: {"kernel": request.param, "max_keys": 128, "ms": {}})
    return request.param


def _heads(B: int, H: int, L: int, D: int, dtype: torch.dtype, layout: str) -> torch.Tensor:
    """``(B, H, L, D)`` in the given memory layout: ``bhld`` contiguous, ``blhd`` the transposed heads of a
    projection, ``gap`` a slice of a wider tensor (row stride larger than the rows)."""
    if layout == "bhld":
        t = torch.randn(B, H, L, D)
    elif layout == "blhd":
        t = torch.randn(B, L, H, D).transpose(1, 2)
    else:
        t = torch.randn(B, H, L, D + 3)[..., 1 : D + 1]
    return t.to(dtype).requires_grad_()


# (B, H, L, S, D, Dv): AutoInt's shape; D and Dv not multiples of 8; L over one and several 64-query groups;
# one query and one key.
SHAPES = [
    (3, 2, 39, 39, 8, 8),
    (2, 3, 5, 17, 12, 20),
    (2, 2, 33, 70, 16, 16),
    (2, 1, 100, 30, 8, 5),
    (1, 2, 130, 7, 24, 9),
    (2, 2, 1, 1, 3, 3),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["bhld", "blhd", "gap"])
def test_outputs_and_gradients_match_the_float64_oracle(shape, dtype: torch.dtype, layout: str) -> None:
    B, H, L, S, D, Dv = shape
    torch.manual_seed(sum(shape))
    q, k = _heads(B, H, L, D, dtype, layout), _heads(B, H, S, D, dtype, layout)
    v = _heads(B, H, S, Dv, dtype, layout)
    scale = 0.7 if D == 12 else None  # an explicit scale once
    grad = torch.randn(B, H, L, Dv).to(dtype)
    out = attention(q, k, v, scale=scale, backend="cpu")
    out.backward(grad)
    refs = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref, _ = math_attention(*refs, scale=scale)
    ref.backward(grad.double())
    # float32: rounding of sums of S terms; bfloat16: the inputs and outputs are rounded to 8 bits.
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 3e-2, "rtol": 2e-2}
    assert out.dtype == dtype and out.shape == (B, H, L, Dv)
    torch.testing.assert_close(out.double(), ref, **tol)
    for t, r in zip((q, k, v), refs, strict=True):
        assert t.grad.dtype == dtype and t.grad.shape == t.shape
        torch.testing.assert_close(t.grad.double(), r.grad, **tol)


def test_large_scores_are_stable() -> None:
    """Scores in the hundreds: the row max is subtracted before exp, and far-below-max keys flush to 0."""
    q = torch.randn(2, 2, 9, 8) * 30
    k, v = torch.randn(2, 2, 21, 8) * 30, torch.randn(2, 2, 21, 8)
    out = attention(q, k, v, backend="cpu")
    ref, _ = math_attention(q.double(), k.double(), v.double())
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_output_is_a_view_of_merged_heads() -> None:
    """The output is laid out (B, L, H, Dv): merging the heads back is free."""
    q, k, v = (torch.randn(2, 3, 11, 8) for _ in range(3))
    out = attention(q, k, v, backend="cpu")
    merged = out.transpose(1, 2).reshape(2, 11, 24)
    assert merged.data_ptr() == out.data_ptr() and out.transpose(1, 2).is_contiguous()


def test_vector_jacobian_products_match_the_oracle() -> None:
    """gradcheck's finite differences need float64, which the kernel does not take: compare vector-Jacobian
    products for several random output gradients against the float64 oracle's instead."""
    B, H, L, S, D = 1, 2, 6, 10, 5
    q, k, v = (torch.randn(B, H, n, D, requires_grad=True) for n in (L, S, S))
    out = attention(q, k, v, backend="cpu")
    refs = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref, _ = math_attention(*refs)
    for _ in range(3):
        g = torch.randn_like(out)
        got = torch.autograd.grad(out, (q, k, v), g, retain_graph=True)
        want = torch.autograd.grad(ref, refs, g.double(), retain_graph=True)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "kw, what",
    [
        ({"mask": torch.ones(2, 7, dtype=torch.bool)}, "mask"),
        ({"bias": torch.zeros(1, 1, 5, 7)}, "bias"),
        ({"causal": True}, "causal"),
    ],
)
def test_unsupported_features_are_refused(kw: dict, what: str) -> None:
    q, k, v = torch.randn(2, 2, 5, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    with pytest.raises(ValueError, match="backend 'cpu'"):
        attention(q, k, v, backend="cpu", **kw)


def test_gqa_and_float64_are_refused() -> None:
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    with pytest.raises(ValueError, match="backend 'cpu'"):
        attention(q, k, v, backend="cpu")
    with pytest.raises(ValueError, match="backend 'cpu'"):
        attention(q.double(), k.double().repeat(1, 2, 1, 1), v.double().repeat(1, 2, 1, 1), backend="cpu")


def test_mha_module_auto_uses_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``mha`` layer on short unmasked inputs goes through the kernel and matches the math backend."""
    from polyhead.attention import create_attention

    used = []
    real = cpu.short_attention
    monkeypatch.setattr(cpu, "short_attention", lambda *a, **kw: used.append(1) or real(*a, **kw))
    # the dispatch, not the machine's measurement (which test workers loading the machine can sway)
    monkeypatch.setattr(cpu, "choice", lambda: {"kernel": cpu.kernels()[0], "max_keys": 128, "ms": {}})
    m = create_attention("mha", dim=16, num_heads=2)
    x = torch.randn(4, 39, 16)
    out = m(x).output
    assert used
    m.backend = "math"
    torch.testing.assert_close(out, m(x).output, atol=1e-5, rtol=1e-5)
    assert functional.CPU_FUSED_MAX_KEYS >= 39


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_heads_of_one_projection_get_gradients_in_one_tensor(dtype: torch.dtype) -> None:
    """q, k, v split from one (B, L, 3 * H * D) projection: the kernel's gradients are the adjacent parts of
    one tensor of that layout (so split_last's backward concatenates nothing) and match the oracle."""
    B, L, H, D = 3, 39, 2, 8
    torch.manual_seed(5)
    x = torch.randn(B, L, 3 * H * D).to(dtype).requires_grad_()
    q, k, v = (t.unflatten(-1, (H, D)).transpose(1, 2) for t in functional.split_last(x, [H * D] * 3))
    grad = torch.randn(B, H, L, D).to(dtype)
    attention(q, k, v, backend="cpu").backward(grad)
    xd = x.detach().double().requires_grad_()
    qd, kd, vd = (t.unflatten(-1, (H, D)).transpose(1, 2) for t in xd.split(H * D, -1))
    math_attention(qd, kd, vd)[0].backward(grad.double())
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 3e-2, "rtol": 2e-2}
    torch.testing.assert_close(x.grad.double(), xd.grad, **tol)
    # the kernel's gradient buffers themselves: three parts of one (B, L, 3 * H * D) tensor
    _, w = cpu._ops(cpu.choice()["kernel"]).short_attention_forward(
        q.detach(), k.detach(), v.detach(), D**-0.5
    )
    parts = cpu._ops(cpu.choice()["kernel"]).short_attention_backward(
        q.detach(), k.detach(), v.detach(), w, grad, D**-0.5
    )
    base = parts[0].untyped_storage().data_ptr()
    assert all(p.untyped_storage().data_ptr() == base for p in parts)
    assert [p.storage_offset() for p in parts] == [0, H * D, 2 * H * D]
    assert parts[0].stride() == (L * 3 * H * D, D, 3 * H * D, 1)


def test_split_last_reuses_adjacent_gradients_and_concatenates_others() -> None:
    x = torch.randn(2, 5, 12, requires_grad=True)
    a, b, c = functional.split_last(x, [4, 4, 4])
    g = torch.randn(2, 5, 12)
    # adjacent parts of one contiguous tensor: handed back as that tensor, no copy
    back = functional._SplitLast.backward(_ctx(x, (4, 4, 4)), *g.split(4, -1))[0]
    assert back.data_ptr() == g.data_ptr() and torch.equal(back, g)
    # separate tensors, or one missing: concatenated (zeros for the missing one), like torch's split
    sep = [torch.randn(2, 5, 4) for _ in range(3)]
    torch.testing.assert_close(
        functional._SplitLast.backward(_ctx(x, (4, 4, 4)), *sep)[0], torch.cat(sep, -1)
    )
    got = functional._SplitLast.backward(_ctx(x, (4, 4, 4)), sep[0], None, sep[2])[0]
    torch.testing.assert_close(got, torch.cat([sep[0], torch.zeros(2, 5, 4), sep[2]], -1))
    # end to end through autograd, an unused part included
    (a.sum() * 2 + (c * c).sum()).backward()
    ref = torch.cat([torch.full((2, 5, 4), 2.0), torch.zeros(2, 5, 4), 2 * c.detach()], -1)
    torch.testing.assert_close(x.grad, ref)
    assert type(a.grad_fn).__name__ == "_SplitLastBackward"
    assert all(p.grad_fn is None for p in functional.split_last(x.detach(), [6, 6]))  # no graph: plain views


def _ctx(x: torch.Tensor, sizes: tuple[int, ...]):
    from types import SimpleNamespace

    return SimpleNamespace(sizes=sizes, shape=tuple(x.shape), dtype=x.dtype, device=x.device)


def test_mha_gradients_match_the_math_backend() -> None:
    """mha's stacked projection, split_last and the kernel together: every parameter's gradient as with math."""
    from polyhead.attention import create_attention

    torch.manual_seed(11)
    m = create_attention("mha", dim=16, num_heads=2)
    x = torch.randn(8, 39, 16)
    grads = {}
    for backend in ("cpu", "math"):
        m.zero_grad()
        m.backend = backend
        (m(x).output ** 2).sum().backward()
        grads[backend] = {n: p.grad.clone() for n, p in m.named_parameters()}
    for n in grads["math"]:
        torch.testing.assert_close(grads["cpu"][n], grads["math"][n], atol=1e-4, rtol=1e-4)


def test_double_backward_is_refused_not_wrong() -> None:
    q, k, v = (torch.randn(2, 2, 5, 8, requires_grad=True) for _ in range(3))
    (gq,) = torch.autograd.grad(attention(q, k, v, backend="cpu").sum(), q, create_graph=True)
    with pytest.raises(RuntimeError, match=r"once_differentiable|does not require grad"):
        gq.sum().backward()


def test_nan_and_inf_scores_give_nan_rows_like_torch() -> None:
    """A NaN or +inf score makes that query's weights NaN (as torch.softmax does); other rows are unaffected."""
    q, k, v = torch.randn(2, 2, 6, 8), torch.randn(2, 2, 9, 8), torch.randn(2, 2, 9, 8)
    q[0, 1, 2, 3] = float("nan")
    q[1, 0, 4, :] = float("inf")
    out = attention(q, k, v, backend="cpu")
    ref, _ = math_attention(q.double(), k.double(), v.double())
    assert torch.equal(out.isnan(), ref.isnan()) and out[0, 1, 2].isnan().all() and out[1, 0, 4].isnan().all()
    ok = ~ref.isnan()
    torch.testing.assert_close(out.double()[ok], ref[ok], atol=1e-5, rtol=1e-5)


def test_auto_choice_is_measured_once_and_cached(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    result = {"kernel": cpu.kernels()[-1], "max_keys": 64, "ms": {"39x8": {"math": 2.0}}}
    monkeypatch.setattr(cpu, "measure", lambda: calls.append(1) or result)
    monkeypatch.setattr(cpu, "CACHE", tmp_path / "polyhead" / "cpu_attention.json")
    monkeypatch.setattr(cpu.os, "getloadavg", lambda: (0.2, 0.2, 0.2))  # an idle machine
    choose = REAL_CHOICE.__wrapped__  # the uncached function (cpu.choice is patched by the fixture)
    assert choose() == result and calls == [1]
    assert choose() == result and calls == [1]  # read from the cache file, not measured again
    cached = __import__("json").loads(cpu.CACHE.read_text())
    assert list(cached.values()) == [result] and cpu.capability() in next(iter(cached))


def test_a_busy_measurement_is_provisional_until_the_machine_is_idle(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Busy: measured once and shared by the processes that start while it stays busy (one kernel for every
    part of a run); the first idle process measures again and its result replaces the provisional one."""
    calls = []
    results = [
        {"kernel": None, "max_keys": 0, "ms": {"39x8": {"math": 2.0}}},
        {"kernel": cpu.kernels()[-1], "max_keys": 128, "ms": {"39x8": {"math": 1.0}}},
    ]

    def measure() -> dict:
        calls.append(1)
        return results[len(calls) - 1]

    monkeypatch.setattr(cpu, "measure", measure)
    monkeypatch.setattr(cpu, "CACHE", tmp_path / "polyhead" / "cpu_attention.json")
    busy = float(__import__("os").cpu_count() or 1)
    load = [busy]
    monkeypatch.setattr(cpu.os, "getloadavg", lambda: (load[0],) * 3)
    choose = REAL_CHOICE.__wrapped__
    first = choose()
    assert first == {**results[0], "busy": busy} and calls == [1]
    assert choose() == first and calls == [1]  # still busy: the provisional entry, not measured again
    load[0] = 0.1
    assert choose() == results[1] and calls == [1, 1]  # idle: measured again, and that result is final
    load[0] = busy
    assert choose() == results[1] and calls == [1, 1]
    cached = __import__("json").loads(cpu.CACHE.read_text())
    assert list(cached.values()) == [results[1]]


def test_auto_keeps_the_unfused_path_where_no_kernel_is_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    q = torch.randn(4, 2, 39, 8)
    assert (
        functional.select_backend(
            q, bias=None, mask=None, block_mask=None, need_weights=False, kv_len=39, kv_heads=2
        )
        == "cpu"
    )
    monkeypatch.setattr(cpu, "choice", lambda: {"kernel": None, "max_keys": 0, "ms": {}})
    assert (
        functional.select_backend(
            q, bias=None, mask=None, block_mask=None, need_weights=False, kv_len=39, kv_heads=2
        )
        != "cpu"
    )
    monkeypatch.setattr(cpu, "choice", lambda: {"kernel": "portable", "max_keys": 39, "ms": {}})
    q64 = torch.randn(4, 2, 64, 8)
    assert (
        functional.select_backend(
            q64, bias=None, mask=None, block_mask=None, need_weights=False, kv_len=64, kv_heads=2
        )
        != "cpu"
    )


def test_portable_kernel_vector_width_matches_the_capability() -> None:
    if "portable" not in cpu.kernels():
        pytest.skip("portable kernel not built")
    width = torch.ops.polyhead_cpu_portable.vector_width()
    assert width == {"AVX512": 16, "AVX2": 8}.get(cpu.capability(), width)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_probe_times_forward_and_backward_under_no_grad_callers(mode: str) -> None:
    # The first auto dispatch can come from a validation or predict step; the probe must still run there.
    calls = []

    def fn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        calls.append(q.requires_grad)
        return math_attention(q, k, v)[0]

    ctx = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with ctx:
        ms = cpu._time_ms(fn, (2, 2, 16, 8), iters=1)
    assert ms > 0 and calls == [True, True]
