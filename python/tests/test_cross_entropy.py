"""xent.cross_entropy against torch.nn.functional.cross_entropy (computed in float64)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

import xent

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# Tolerances of the loss and gradient against the float64 result, per input dtype: the
# 16-bit inputs are exact, the 16-bit gradient is rounded once on the way out.
TOL = {
    torch.float32: dict(rtol=2e-5, atol=2e-6),
    torch.bfloat16: dict(rtol=1.6e-2, atol=2e-3),
    torch.float16: dict(rtol=2e-3, atol=2e-4),
}


def logits(n, c, dtype, seed, scale=4.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, c, generator=g) * scale).to(dtype)


def targets(n, c, seed, ignored=0.0, dtype=torch.int64):
    g = torch.Generator().manual_seed(seed + 1)
    t = torch.randint(0, c, (n,), generator=g)
    t[torch.rand(n, generator=g) < ignored] = -100
    return t.to(dtype)


def reference(x, t, upstream=None, **kw):
    """F.cross_entropy's loss and gradient in float64 (extras by their formulas)."""
    z_loss = kw.pop("z_loss", 0.0)
    softcap = kw.pop("softcap", None)
    if kw.get("weight") is not None:
        kw["weight"] = kw["weight"].double()
    x64 = x.detach().to(torch.float64).requires_grad_()
    z = x64 if softcap is None else softcap * torch.tanh(x64 / softcap)
    loss = F.cross_entropy(z, t.long(), **kw)
    if z_loss:
        ignore = kw.get("ignore_index", -100)
        keep = t.long() != ignore
        per_row = z_loss * torch.logsumexp(z, dim=1) ** 2 * keep
        red = kw.get("reduction", "mean")
        if red == "none":
            loss = loss + per_row
        elif red == "sum":
            loss = loss + per_row.sum()
        else:
            w = kw.get("weight")
            tk = t.long().clamp(min=0)
            div = keep.sum() if w is None else (w.double()[tk] * keep).sum()
            if div > 0:  # else the loss is already NaN, its gradient 0
                loss = loss + per_row.sum() / div
    if upstream is None:
        upstream = torch.ones_like(loss)
    (grad,) = torch.autograd.grad(loss, x64, upstream.double())
    return loss.detach(), grad


def check(x, t, inplace=False, upstream=None, **kw):
    want_loss, want_grad = reference(x, t, upstream, **dict(kw))
    xin = x.clone().requires_grad_() if not inplace else x.clone()
    if inplace:
        # The gradient is written over a non-leaf tensor: make one.
        leaf = x.clone().requires_grad_()
        xin = leaf * 1
        loss = xent.cross_entropy(xin, t, inplace_backward=True, **kw)
        grad_of = leaf
    else:
        loss = xent.cross_entropy(xin, t, **kw)
        grad_of = xin
    assert loss.dtype == x.dtype
    if upstream is None:
        upstream = torch.ones_like(loss)
    (grad,) = torch.autograd.grad(loss, grad_of, upstream.to(loss.dtype))
    assert grad.dtype == x.dtype
    tol = TOL[x.dtype]
    torch.testing.assert_close(loss.double(), want_loss, equal_nan=True, **tol)
    torch.testing.assert_close(grad.double(), want_grad, equal_nan=True, **tol)
    return loss, grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("inplace", [False, True])
def test_plain_every_dtype_reduction_and_buffer(dtype, reduction, inplace):
    for n, c in [(1, 2), (7, 3), (33, 100), (64, 1000), (5, 32768)]:
        x = logits(n, c, dtype, seed=n * c)
        t = targets(n, c, seed=n + c, ignored=0.2)
        check(x, t, inplace=inplace, reduction=reduction)


OPTIONS = {
    "weight": lambda c: dict(weight=torch.linspace(0.5, 2.0, c)),
    "smoothing": lambda c: dict(label_smoothing=0.1),
    "weight+smoothing": lambda c: dict(
        weight=torch.linspace(0.5, 2.0, c), label_smoothing=0.3
    ),
    "z_loss": lambda c: dict(z_loss=1e-3),
    "softcap": lambda c: dict(softcap=5.0),
    "everything": lambda c: dict(
        weight=torch.linspace(0.1, 1.0, c),
        label_smoothing=0.05,
        z_loss=1e-4,
        softcap=10.0,
    ),
    "no ignore index": lambda c: dict(ignore_index=None),
}


@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_every_option(name, dtype, reduction):
    for n, c, tdtype in [(9, 5, torch.int64), (40, 300, torch.int32), (3, 20000, torch.int64)]:
        kw = OPTIONS[name](c)
        x = logits(n, c, dtype, seed=c)
        ignored = 0.0 if name == "no ignore index" else 0.25
        t = targets(n, c, seed=n, ignored=ignored, dtype=tdtype)
        if name == "no ignore index":
            kw = {}
            loss = xent.cross_entropy(x, t, ignore_index=None, reduction=reduction)
            want, _ = reference(x, t, reduction=reduction)
            torch.testing.assert_close(loss.double(), want, **TOL[dtype])
            continue
        check(x, t, reduction=reduction, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_upstream_gradients_scale_the_result(dtype):
    x = logits(16, 50, dtype, seed=3)
    t = targets(16, 50, seed=4, ignored=0.2)
    for reduction in ["mean", "sum"]:
        check(x, t, upstream=torch.tensor(3.5), reduction=reduction)
    g = torch.Generator().manual_seed(9)
    up = torch.randn(16, generator=g)
    check(x, t, upstream=up, reduction="none")
    check(x, t, inplace=True, upstream=up, reduction="none")


def test_special_inputs():
    c = 40
    x = logits(6, c, torch.float32, seed=1)
    x[0, 5:] = float("-inf")  # masked classes
    x[1, :] = x[1, 0]  # a tied row
    t = torch.tensor([2, 7, -100, 0, 39, 11])
    for reduction in ["mean", "sum", "none"]:
        check(x, t, reduction=reduction)
    check(x, t, reduction="mean", label_smoothing=0.0, weight=torch.rand(c) + 0.1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_ignored_batches_as_pytorch(dtype):
    x = logits(4, 10, dtype, seed=2)
    t = torch.full((4,), -100)
    for reduction in ["mean", "sum", "none"]:
        xin = x.clone().requires_grad_()
        loss = xent.cross_entropy(xin, t, reduction=reduction)
        want = F.cross_entropy(x.double(), t, reduction=reduction)
        torch.testing.assert_close(loss.double(), want, equal_nan=True)
        loss.sum().backward() if reduction == "none" else loss.backward()
        assert torch.count_nonzero(xin.grad) == 0
        assert xin.grad.dtype == dtype


def test_spatial_and_single_row_shapes():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 7, 3, 4, generator=g)
    t = torch.randint(0, 7, (2, 3, 4), generator=g)
    t[0, 1, 2] = -100
    for reduction in ["mean", "sum", "none"]:
        xin = x.clone().requires_grad_()
        x64 = x.double().requires_grad_()
        loss = xent.cross_entropy(xin, t, reduction=reduction)
        want = F.cross_entropy(x64, t, reduction=reduction)
        assert loss.shape == want.shape
        torch.testing.assert_close(loss.double(), want.detach(), **TOL[torch.float32])
        up = torch.rand(want.shape, generator=g)
        loss.backward(up.float())
        want.backward(up.double())
        torch.testing.assert_close(xin.grad.double(), x64.grad, **TOL[torch.float32])
    one = torch.randn(9, generator=g)
    for reduction in ["mean", "none"]:
        loss = xent.cross_entropy(one, torch.tensor(4), reduction=reduction)
        want = F.cross_entropy(one.double(), torch.tensor(4), reduction=reduction)
        assert loss.shape == want.shape
        torch.testing.assert_close(loss.double(), want, **TOL[torch.float32])


def test_non_contiguous_input():
    x = logits(30, 20, torch.float32, seed=8).t()  # (20, 30), not contiguous
    t = targets(20, 30, seed=8)
    check(x, t)


def test_thread_counts_give_identical_bits():
    x = logits(512, 4000, torch.float32, seed=11)
    t = targets(512, 4000, seed=11, ignored=0.1)
    results = []
    for threads in [1, 2, 3]:
        xin = x.clone().requires_grad_()
        loss = xent.cross_entropy(xin, t, label_smoothing=0.1, num_threads=threads)
        loss.backward()
        results.append((loss.item(), xin.grad.clone()))
    for loss, grad in results[1:]:
        assert loss == results[0][0]
        assert torch.equal(grad, results[0][1])


def test_inplace_writes_the_gradient_over_the_input():
    x = logits(8, 30, torch.float32, seed=12)
    t = targets(8, 30, seed=12)
    leaf = x.clone().requires_grad_()
    z = leaf + 0.0
    loss = xent.cross_entropy(z, t, inplace_backward=True)
    loss.backward()
    torch.testing.assert_close(z.detach(), leaf.grad)
    # Not allowed where another node saved the logits: exp saves its output.
    leaf = x.clone().requires_grad_()
    z = leaf.exp()
    loss = xent.cross_entropy(z, t, inplace_backward=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_no_grad_leaves_the_input_alone():
    x = logits(8, 30, torch.float32, seed=13)
    t = targets(8, 30, seed=13)
    before = x.clone()
    with torch.no_grad():
        loss = xent.cross_entropy(x, t, inplace_backward=True)
    want = F.cross_entropy(x.double(), t)
    torch.testing.assert_close(loss.double(), want, **TOL[torch.float32])
    assert torch.equal(x, before)


def test_errors_are_exceptions_and_write_nothing():
    x = logits(4, 10, torch.float32, seed=14)
    before = x.clone()
    bad_target = torch.tensor([0, 1, 10, 2])
    for inplace in [False, True]:
        with pytest.raises(IndexError, match="target"):
            xent.cross_entropy(x, bad_target, inplace_backward=inplace)
        assert torch.equal(x, before)
    t = torch.tensor([0, 1, 2, 3])
    cases = [
        (dict(label_smoothing=1.5), ValueError),
        (dict(z_loss=-1.0), ValueError),
        (dict(softcap=0.0), ValueError),
        (dict(weight=torch.ones(9)), ValueError),
        (dict(reduction="avg"), ValueError),
    ]
    for kw, exc in cases:
        with pytest.raises(exc):
            xent.cross_entropy(x.clone().requires_grad_(), t, **kw)
    with pytest.raises(ValueError, match="target of shape"):
        xent.cross_entropy(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="dtype"):
        xent.cross_entropy(x.double(), t)
    with pytest.raises(ValueError, match="dtype"):
        xent.cross_entropy(x, t.float())
    with pytest.raises(ValueError, match="classes"):
        xent.cross_entropy(torch.empty(3, 0), torch.zeros(3, dtype=torch.long))
    assert torch.equal(x, before)


def test_module_matches_torch_and_trains():
    g = torch.Generator().manual_seed(0)
    for kw in [dict(), dict(reduction="sum", label_smoothing=0.1), dict(weight=torch.rand(5) + 0.5)]:
        ours, theirs = xent.CrossEntropyLoss(**kw), torch.nn.CrossEntropyLoss(**kw)
        x = torch.randn(12, 5, generator=g)
        t = torch.randint(0, 5, (12,), generator=g)
        torch.testing.assert_close(ours(x, t), theirs(x, t), **TOL[torch.float32])
    # A three-line training loop on separable data.
    x = torch.randn(256, 8, generator=g)
    t = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    model, loss_fn = torch.nn.Linear(8, 4), xent.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    first = loss_fn(model(x), t).item()
    for _ in range(100):
        opt.zero_grad()
        loss_fn(model(x), t).backward()
        opt.step()
    last = loss_fn(model(x), t).item()
    accuracy = (model(x).argmax(1) == t).float().mean().item()
    assert last < 0.5 * first and accuracy > 0.9, (first, last, accuracy)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_against_finite_differences(reduction):
    # The kernels are float32: gradcheck's float64 finite differences of the loss, taken
    # through a float32 call, with a step and tolerances that float32 rounding allows.
    g = torch.Generator().manual_seed(21)
    x = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 3, -100, 6, 2])
    w = torch.rand(7, generator=g) + 0.5
    for kw in [dict(), dict(label_smoothing=0.2, weight=w, z_loss=0.01, softcap=4.0)]:

        def f(x):
            return xent.cross_entropy(x.float(), t, reduction=reduction, **kw).double()

        assert torch.autograd.gradcheck(f, (x,), eps=1e-2, atol=2e-3, rtol=1e-2)


def test_a_second_backward_through_the_same_graph():
    x = logits(6, 9, torch.float32, seed=30)
    t = targets(6, 9, seed=30)
    for reduction in ["mean", "sum", "none"]:
        xin = x.clone().requires_grad_()
        loss = xent.cross_entropy(xin, t, reduction=reduction).sum()
        loss.backward(retain_graph=True)
        first = xin.grad.clone()
        loss.backward()
        torch.testing.assert_close(xin.grad, 2 * first)
        # Over the logits, the first backward has used them up: an error, not a wrong sum.
        leaf = x.clone().requires_grad_()
        loss = xent.cross_entropy(leaf * 1, t, reduction=reduction, inplace_backward=True).sum()
        loss.backward(retain_graph=True)
        with pytest.raises(RuntimeError, match="retain_graph"):
            loss.backward()
