"""``xent.cross_entropy``: the crate's fused forward + backward behind PyTorch's autograd.

The forward of ``reduction="mean"`` or ``"sum"`` computes the loss and the whole gradient
in one pass over the logits (into a fresh buffer, or over the logits themselves with
``inplace_backward=True``); the backward only scales that gradient by the upstream
gradient (and skips even that when it is 1, as it is for ``loss.backward()``). With
``reduction="none"`` the forward keeps each row's log-sum-exp and the backward forms the
gradient from it with the per-row upstream gradients (the crate's ``backward``).

The tensors' memory is handed to the crate without a copy (``tensor.numpy()`` shares it;
16-bit tensors as ``uint16`` views of their bits), and the GIL is released while the
kernels run on ``torch.get_num_threads()`` threads.
"""

import torch

from . import _xent

_DTYPES = {
    torch.float32: "float32",
    torch.bfloat16: "bfloat16",
    torch.float16: "float16",
}


def _view(t):
    """A NumPy array over the tensor's own memory (16-bit types as their bits)."""
    t = t.detach()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.uint16)
    return t.numpy()


def _bump_version(t):
    """Tell autograd that ``t`` was written, so that a node which saved it for its own
    backward raises instead of silently using the gradient in its place."""
    increment = getattr(torch.autograd.graph, "increment_version", None)
    if increment is not None:
        increment(t)


def _loss(res, reduction, dtype):
    """The reduced loss as a tensor; a mean over nothing (no counted row, or class weights
    that sum to 0) is NaN, as PyTorch's 0 / 0."""
    value, _, _, _, weight = res
    if reduction == "mean" and weight == 0:
        value = float("nan")
    return torch.tensor(value, dtype=dtype)


def _config(classes, reduction, ignore_index, label_smoothing, weight, z_loss, softcap, threads):
    """The crate's configuration for one call (the crate checks the values)."""
    if weight is not None:
        if not isinstance(weight, torch.Tensor) or weight.dim() != 1:
            raise ValueError("class weights must be a 1-D tensor with one entry per class")
        weight = weight.detach().to(torch.float32).tolist()
    threads = torch.get_num_threads() if threads is None else int(threads)
    return _xent.Config(
        classes,
        reduction,
        ignore_index,
        float(label_smoothing),
        weight,
        float(z_loss),
        None if softcap is None else float(softcap),
        max(threads, 1),
    )


def _fused(cfg, logits, target, inplace):
    """The loss and the gradient in one pass: over ``logits`` if ``inplace``, else into a
    fresh buffer (float32) or over a copy (16-bit). Returns ``(gradient, loss tuple)``."""
    dtype = _DTYPES[logits.dtype]
    if inplace:
        res = _xent.forward_backward(cfg, _view(logits), dtype, _view(target))
        _bump_version(logits)
        grad = logits
    elif logits.dtype == torch.float32:
        grad = torch.empty_like(logits)
        res = _xent.forward_backward(cfg, _view(logits), dtype, _view(target), _view(grad))
    else:
        grad = logits.detach().clone()
        res = _xent.forward_backward(cfg, _view(grad), dtype, _view(target))
    _, _, rows, _, weight = res
    if cfg.mean and weight == 0 and rows > 0:
        # Counted rows whose class weights sum to 0: PyTorch's gradient is 0 / 0.
        grad.fill_(float("nan"))
    return grad, res


_SPENT = (
    "xent.cross_entropy(..., inplace_backward=True) wrote its gradient over the logits,"
    " and a first backward has used it: a second backward through the same graph"
    " (retain_graph=True) needs the call without inplace_backward"
)


class _CrossEntropy(torch.autograd.Function):
    """Mean and sum: the forward computes the gradient and the first backward hands that
    buffer on (scaled if the upstream gradient is not 1), so autograd can keep it as the
    leaf's ``.grad`` without a copy; a second backward (``retain_graph=True``) computes it
    again from the saved logits. None: the backward forms it from the saved log-sum-exp."""

    @staticmethod
    def forward(ctx, logits, target, cfg, reduction, inplace):
        ctx.set_materialize_grads(False)
        ctx.cfg, ctx.inplace, ctx.reduction, ctx.spent = cfg, inplace, reduction, False
        ctx.grad = None
        if reduction == "none":
            n = logits.shape[0]
            losses = torch.empty(n, dtype=torch.float32)
            lse = torch.empty(n, dtype=torch.float32)
            dtype = _DTYPES[logits.dtype]
            _xent.forward_rows(
                cfg, _view(logits), dtype, _view(target), _view(losses), _view(lse)
            )
            ctx.save_for_backward(logits, target, lse)
            return losses.to(logits.dtype)
        if not ctx.needs_input_grad[0]:
            res = _xent.forward(cfg, _view(logits), _DTYPES[logits.dtype], _view(target))
            return _loss(res, reduction, logits.dtype)
        ctx.grad, res = _fused(cfg, logits, target, inplace)
        if not inplace:
            ctx.save_for_backward(logits, target)
        return _loss(res, reduction, logits.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        none = (None, None, None, None, None)
        if grad_out is None:
            return none
        if ctx.spent and ctx.inplace:
            raise RuntimeError(_SPENT)
        ctx.spent = True
        if ctx.reduction != "none":
            # The first backward takes the buffer (and drops this reference to it).
            grad, ctx.grad = ctx.grad, None
            if grad is None:
                logits, target = ctx.saved_tensors
                grad, _ = _fused(ctx.cfg, logits, target, False)
            if grad_out.item() != 1.0:
                grad = grad * grad_out.to(grad.dtype)
            return (grad,) + none[1:]
        logits, target, lse = ctx.saved_tensors
        dtype = _DTYPES[logits.dtype]
        upstream = grad_out.detach().to(torch.float32).contiguous()
        args = (_view(target), _view(lse), _view(upstream))
        if ctx.inplace:
            grad = logits
            _xent.backward_rows(ctx.cfg, _view(grad), dtype, *args)
            _bump_version(logits)
        elif logits.dtype == torch.float32:
            grad = torch.empty_like(logits)
            _xent.backward_rows(ctx.cfg, _view(logits), dtype, *args, _view(grad))
        else:
            grad = logits.detach().clone()
            _xent.backward_rows(ctx.cfg, _view(grad), dtype, *args)
        return (grad,) + none[1:]


def cross_entropy(
    input,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    *,
    inplace_backward=False,
    num_threads=None,
):
    """Cross-entropy between logits and class indices, as ``F.cross_entropy``.

    Same argument names, defaults and results as ``torch.nn.functional.cross_entropy``
    for the options they share; in addition ``z_loss`` (PaLM's ``z_loss * lse^2`` per
    counted row, reduced with the loss) and ``softcap`` (Gemma 2's logit soft-capping: the
    loss of ``softcap * tanh(input / softcap)``).

    Args:
        input: ``(N, C)`` logits, ``(C,)`` for one row, or ``(N, C, d1, ...)``; float32,
            bfloat16 or float16, on the CPU.
        target: class indices, int64 or int32: ``(N,)``, ``()`` or ``(N, d1, ...)``.
        weight: optional ``(C,)`` class weights.
        ignore_index: rows with this target count for nothing (default -100); ``None``
            for none.
        reduction: ``"mean"`` (weighted mean over counted rows; NaN if there are none, as
            PyTorch), ``"sum"`` or ``"none"`` (per-row losses in the input's dtype, 0 for
            ignored rows).
        label_smoothing: in ``[0, 1]``.
        z_loss: coefficient ``>= 0``.
        softcap: the cap, or ``None``.
        inplace_backward: write the gradient over ``input`` instead of a fresh buffer
            (saves an ``N x C`` allocation and its page faults). With ``"mean"`` and
            ``"sum"`` the gradient is written during this call, so ``input`` holds it
            from then on. Safe when nothing else needs the logits' values: not for
            logits that another autograd node saved for its own backward (autograd
            then raises on ``backward()``, since the call bumps the tensor's version),
            nor for logits you read afterwards. A ``(N, C, d1, ...)`` input is
            rearranged into a copy first, and the copy is what is overwritten.
        num_threads: threads for the kernels (default ``torch.get_num_threads()``).

    Returns:
        The loss, a tensor in the input's dtype; differentiable with respect to ``input``.

    Raises:
        ValueError: a shape, dtype or option that does not fit.
        IndexError: a target outside ``[0, C)`` that is not ``ignore_index``.
    """
    if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("input and target must be tensors")
    if input.device.type != "cpu" or target.device.type != "cpu":
        raise ValueError("xent runs on the CPU: input and target must be CPU tensors")
    if input.dtype not in _DTYPES:
        raise ValueError(
            f"input of dtype {input.dtype}: float32, bfloat16 or float16 expected"
        )
    if target.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"target of dtype {target.dtype}: class indices as int64 or int32 expected"
            " (class probabilities are not supported)"
        )
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if input.dim() == 0:
        raise ValueError("input must have at least one dimension (the classes)")
    if input.dim() == 1:
        if target.dim() != 0:
            raise ValueError(
                f"a 1-D input needs a 0-D target, got a target of shape {tuple(target.shape)}"
            )
        out = cross_entropy(
            input.unsqueeze(0),
            target.unsqueeze(0),
            weight,
            ignore_index,
            reduction,
            label_smoothing,
            z_loss,
            softcap,
            inplace_backward=inplace_backward,
            num_threads=num_threads,
        )
        return out.squeeze(0) if reduction == "none" else out
    classes = input.shape[1]
    batch = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != batch:
        raise ValueError(
            f"target of shape {tuple(target.shape)} for input of shape "
            f"{tuple(input.shape)}: expected {batch}"
        )
    logits = input
    if input.dim() > 2:
        logits = input.movedim(1, -1).reshape(-1, classes)
    logits = logits.contiguous()
    target = target.reshape(-1).contiguous()
    cfg = _config(
        classes, reduction, ignore_index, label_smoothing, weight, z_loss, softcap, num_threads
    )
    out = _CrossEntropy.apply(logits, target, cfg, reduction, bool(inplace_backward))
    if reduction == "none":
        out = out.reshape(batch)
    return out


def _linear_grads(cfg, budget, hidden, weight, bias, target):
    """The fused head's loss and its three gradients (fresh buffers)."""
    dh, dw = torch.empty_like(hidden), torch.empty_like(weight)
    db = None if bias is None else torch.empty_like(bias)
    res = _xent.linear(
        cfg, hidden.shape[1], _DTYPES[hidden.dtype], _view(hidden), _view(weight),
        None if bias is None else _view(bias), _view(target),
        _view(dh), _view(dw), None if db is None else _view(db),
        memory_budget=budget,
    )
    _, _, rows, _, total = res
    if cfg.mean and total == 0 and rows > 0:
        for g in (dh, dw, db):
            if g is not None:
                g.fill_(float("nan"))
    return (dh, dw, db), res


class _LinearCrossEntropy(torch.autograd.Function):
    """The gradients come from the forward; the first backward hands them on, a second
    one (``retain_graph=True``) computes them again from the saved inputs."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, target, cfg, reduction, budget):
        ctx.set_materialize_grads(False)
        ctx.grads, ctx.cfg, ctx.budget = None, cfg, budget
        b = None if bias is None else _view(bias)
        head = (cfg, hidden.shape[1], _DTYPES[hidden.dtype], _view(hidden), _view(weight), b)
        if reduction == "none":
            losses = torch.empty(hidden.shape[0], dtype=torch.float32)
            _xent.linear(*head, _view(target), losses=_view(losses), memory_budget=budget)
            return losses.to(hidden.dtype)
        if not any(ctx.needs_input_grad[:3]):
            res = _xent.linear(*head, _view(target), memory_budget=budget)
            return _loss(res, reduction, hidden.dtype)
        ctx.grads, res = _linear_grads(cfg, budget, hidden, weight, bias, target)
        ctx.save_for_backward(hidden, weight, bias, target)
        return _loss(res, reduction, hidden.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        grads, ctx.grads = ctx.grads, None
        if grad_out is None:
            return None, None, None, None, None, None, None
        if grads is None:
            grads, _ = _linear_grads(ctx.cfg, ctx.budget, *ctx.saved_tensors)
        if grad_out.item() != 1.0:
            grads = tuple(None if g is None else g * grad_out.to(g.dtype) for g in grads)
        dh, dw, db = grads
        return dh, dw, db, None, None, None, None


def linear_cross_entropy(
    hidden,
    weight,
    target,
    bias=None,
    class_weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    *,
    num_threads=None,
    memory_budget=None,
):
    """``cross_entropy(F.linear(hidden, weight, bias), target)`` without the logits.

    The crate's fused head (``xent::LinearCrossEntropy``): rows are processed in chunks
    whose float32 logits fit ``memory_budget`` bytes (64 MiB by default), and the
    gradients with respect to ``hidden``, ``weight`` and ``bias`` are computed in the
    forward (one pass of three GEMMs per chunk) and scaled in the backward.

    Args:
        hidden: ``(N, d)`` or ``(..., d)`` hidden states.
        weight: ``(V, d)``, ``nn.Linear``'s layout.
        target: class indices, int64 or int32, of ``hidden``'s leading shape.
        bias: optional ``(V,)``.
        class_weight: optional ``(V,)`` class weights (``F.cross_entropy``'s ``weight``).
        ignore_index, reduction, label_smoothing, z_loss, softcap: as
            :func:`xent.cross_entropy`. ``reduction="none"`` gives per-row losses without
            a gradient (an error if one is required).
        num_threads: threads (default ``torch.get_num_threads()``).
        memory_budget: bytes for a chunk's logits.

    ``hidden``, ``weight`` and ``bias`` share one dtype: float32, bfloat16 or float16 (the
    sums are float32 inside; the gradients come back in that dtype).
    """
    for name, t in [("hidden", hidden), ("weight", weight), ("target", target)]:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a tensor")
        if t.device.type != "cpu":
            raise ValueError("xent runs on the CPU: every tensor must be a CPU tensor")
    if hidden.dtype not in _DTYPES:
        raise ValueError(f"hidden of dtype {hidden.dtype}: float32, bfloat16 or float16 expected")
    for name, t in [("weight", weight), ("bias", bias)]:
        if t is not None and t.dtype != hidden.dtype:
            raise ValueError(f"{name} of dtype {t.dtype} with hidden of dtype {hidden.dtype}")
    if target.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"target of dtype {target.dtype}: int64 or int32 expected")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if hidden.dim() < 1 or weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"hidden of shape {tuple(hidden.shape)} and weight of shape "
            f"{tuple(weight.shape)}: expected (..., d) and (V, d)"
        )
    lead = tuple(hidden.shape[:-1])
    if tuple(target.shape) != lead:
        raise ValueError(f"target of shape {tuple(target.shape)}: expected {lead}")
    dim = hidden.shape[-1]
    h = hidden.reshape(-1, dim).contiguous()
    w = weight.contiguous()
    b = None if bias is None else bias.contiguous()
    t = target.reshape(-1).contiguous()
    cfg = _config(
        weight.shape[0], reduction, ignore_index, label_smoothing, class_weight, z_loss,
        softcap, num_threads,
    )
    if reduction == "none" and torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (hidden, weight, bias)
    ):
        raise ValueError(
            "linear_cross_entropy with reduction='none' has no backward: use 'mean' or"
            " 'sum', or call it under torch.no_grad()"
        )
    budget = None if memory_budget is None else int(memory_budget)
    out = _LinearCrossEntropy.apply(h, w, b, t, cfg, reduction, budget)
    return out.reshape(lead) if reduction == "none" else out
