"""xent.linear_cross_entropy against F.linear + F.cross_entropy (computed in float64)."""

import pytest
import torch
import torch.nn.functional as F

import xent

TOL = {
    torch.float32: dict(rtol=1e-4, atol=1e-5),
    torch.bfloat16: dict(rtol=2e-2, atol=2e-3),
    torch.float16: dict(rtol=4e-3, atol=4e-4),
}


def inputs(n, d, v, dtype, seed, bias=True):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g).to(dtype)
    w = (torch.randn(v, d, generator=g) / d**0.5).to(dtype)
    b = (torch.randn(v, generator=g) * 0.5).to(dtype) if bias else None
    t = torch.randint(0, v, (n,), generator=g)
    t[torch.rand(n, generator=g) < 0.2] = -100
    return h, w, b, t


def reference(h, w, b, t, **kw):
    z_loss = kw.pop("z_loss", 0.0)
    softcap = kw.pop("softcap", None)
    cw = kw.pop("class_weight", None)
    leaves = [x.detach().double().requires_grad_() for x in (h, w)]
    bias = None if b is None else b.detach().double().requires_grad_()
    z = F.linear(leaves[0], leaves[1], bias)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    loss = F.cross_entropy(z, t, weight=None if cw is None else cw.double(), **kw)
    if z_loss:
        keep = t != kw.get("ignore_index", -100)
        div = keep.sum() if cw is None else (cw.double()[t.clamp(min=0)] * keep).sum()
        extra = (z_loss * torch.logsumexp(z, 1) ** 2 * keep).sum()
        loss = loss + (extra / div if kw.get("reduction", "mean") == "mean" else extra)
    wrt = leaves + ([bias] if bias is not None else [])
    grads = torch.autograd.grad(loss, wrt)
    return loss.detach(), grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("bias", [False, True])
def test_matches_linear_then_cross_entropy(dtype, reduction, bias):
    for n, d, v, budget in [(7, 5, 11, None), (50, 16, 300, 4 * 300 * 3), (33, 8, 1000, None)]:
        h, w, b, t = inputs(n, d, v, dtype, seed=n + v, bias=bias)
        want_loss, want = reference(h, w, b, t, reduction=reduction)
        leaves = [x.clone().requires_grad_() for x in (h, w)]
        bl = None if b is None else b.clone().requires_grad_()
        loss = xent.linear_cross_entropy(
            leaves[0], leaves[1], t, bias=bl, reduction=reduction, memory_budget=budget
        )
        assert loss.dtype == dtype
        got = torch.autograd.grad(loss, leaves + ([bl] if bl is not None else []))
        torch.testing.assert_close(loss.double(), want_loss, **TOL[dtype])
        for g, wg in zip(got, want):
            assert g.dtype == dtype
            # Gradient entries are sums over rows or classes: scale the tolerance.
            torch.testing.assert_close(
                g.double(), wg, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * 10
            )


@pytest.mark.parametrize(
    "kw",
    [
        dict(label_smoothing=0.1),
        dict(class_weight=torch.linspace(0.5, 2.0, 40)),
        dict(z_loss=1e-3),
        dict(softcap=3.0),
        dict(class_weight=torch.linspace(0.5, 2.0, 40), label_smoothing=0.2, z_loss=1e-4),
    ],
)
def test_options(kw):
    h, w, b, t = inputs(20, 6, 40, torch.float32, seed=1)
    want_loss, want = reference(h, w, b, t, **dict(kw))
    leaves = [x.clone().requires_grad_() for x in (h, w, b)]
    loss = xent.linear_cross_entropy(leaves[0], leaves[1], t, bias=leaves[2], **kw)
    got = torch.autograd.grad(loss * 2.0, leaves)
    torch.testing.assert_close(loss.double(), want_loss, **TOL[torch.float32])
    for g, wg in zip(got, want):
        torch.testing.assert_close(g.double(), 2.0 * wg, rtol=1e-4, atol=1e-4)


def test_none_reduction_and_leading_shape():
    h, w, b, t = inputs(12, 4, 9, torch.float32, seed=2)
    with torch.no_grad():
        got = xent.linear_cross_entropy(h.view(3, 4, 4), w, t.view(3, 4), bias=b, reduction="none")
    want = F.cross_entropy(F.linear(h.double(), w.double(), b.double()), t, reduction="none")
    assert got.shape == (3, 4)
    torch.testing.assert_close(got.reshape(-1).double(), want, **TOL[torch.float32])
    with pytest.raises(ValueError, match="no backward"):
        xent.linear_cross_entropy(h.requires_grad_(), w, t, reduction="none")


def test_all_ignored_is_nan_with_zero_gradients():
    h, w, b, t = inputs(5, 3, 7, torch.float32, seed=3)
    t[:] = -100
    hl = h.clone().requires_grad_()
    loss = xent.linear_cross_entropy(hl, w, t)
    assert torch.isnan(loss)
    loss.backward()
    assert torch.count_nonzero(hl.grad) == 0


def test_errors():
    h, w, b, t = inputs(5, 3, 7, torch.float32, seed=4)
    with pytest.raises(IndexError):
        xent.linear_cross_entropy(h, w, torch.tensor([0, 1, 2, 3, 7]))
    with pytest.raises(ValueError, match="expected"):
        xent.linear_cross_entropy(h, w[:, :2], t)
    with pytest.raises(ValueError, match="dtype"):
        xent.linear_cross_entropy(h, w.double(), t)
    with pytest.raises(ValueError):
        xent.linear_cross_entropy(h, w, t, label_smoothing=-0.5)


def test_trains_a_small_language_model_head():
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.Embedding(50, 16)
    head = torch.nn.Linear(16, 50)
    tokens = torch.randint(0, 50, (400,), generator=g)
    nxt = (tokens * 7 + 3) % 50  # a deterministic next token to learn
    opt = torch.optim.Adam(list(emb.parameters()) + list(head.parameters()), lr=0.05)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = xent.linear_cross_entropy(emb(tokens), head.weight, nxt, bias=head.bias)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::10]


def test_a_second_backward_through_the_same_graph():
    h, w, b, t = inputs(9, 4, 13, torch.float32, seed=5)
    leaves = [x.clone().requires_grad_() for x in (h, w, b)]
    loss = xent.linear_cross_entropy(leaves[0], leaves[1], t, bias=leaves[2])
    loss.backward(retain_graph=True)
    first = [x.grad.clone() for x in leaves]
    loss.backward()
    for x, g in zip(leaves, first):
        torch.testing.assert_close(x.grad, 2 * g)
