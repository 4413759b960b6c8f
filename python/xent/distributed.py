"""``xent.distributed``: cross-entropy across processes, over ``torch.distributed``.

Two ways to split a batch's cross-entropy over ranks, neither with a communication layer
of its own: every message is a ``torch.distributed`` collective on the caller's process
group (gloo on CPU).

**Vocabulary-parallel** (:func:`vocab_parallel_cross_entropy`), Megatron-LM's design for a
head too wide for one machine: rank ``r`` of the group holds the logits of a contiguous
range of classes, ``(N, V_r)``, the ranges in rank order (rank 0 the first ``V_0``
classes, and so on; uneven and empty ranges allowed). Each rank computes its shard's
softmax statistics with the crate (max, rescaled sum of exps, the target logit where it
holds the target, the argmax), the ranks combine them with two all-reduces of a few
numbers per row (a MAX of the maxima, then a SUM of the sums rescaled to the global
maxima), and every rank forms the same loss; the backward writes each rank's gradient
shard from the merged statistics, with no further communication. Per call each rank
sends ``2 N + 2`` int64 and ``5 N + 65`` float64 values (plus a 5-value all-gather of
the shard sizes and checks), never the ``N x V`` logits.

**Data-parallel** (:func:`data_parallel_cross_entropy`): each rank holds whole rows of
its own batch. The mean over every rank's rows is the sum of the ranks' loss sums over
the sum of their counted weights; one all-reduce of that weight makes each rank's share
exact, so the shares (and their gradients) add up to the global mean's.

A rank that fails raises on that rank; the others raise when the group's collectives
time out (``init_process_group(..., timeout=...)``), never wait forever. Where a rank can
see that the call is inconsistent (rows, targets or options that differ between ranks,
or a bad argument on one rank) every rank raises ``ValueError`` together.
"""

import zlib

import torch
import torch.distributed as dist

from . import _xent
from ._functional import _DTYPES, _config, _loss, _view, cross_entropy


def _checksum(values):
    """A 32-bit digest of a tensor's values or of options, equal on every rank when they
    are equal (Python's ``hash`` is salted per process)."""
    if isinstance(values, torch.Tensor):
        data = values.detach().contiguous().numpy().tobytes()
    else:
        data = repr(values).encode()
    return zlib.crc32(data)


def _agree(group, width, rows, target, options, problem):
    """One all-gather of every rank's shard size, row count and digests of its targets and
    options (and whether its arguments passed the local checks). Returns this rank's class
    offset and the total class count, or raises the same ``ValueError`` on every rank."""
    world = dist.get_world_size(group)
    rank = dist.get_rank(group)
    mine = torch.tensor(
        [width, rows, _checksum(target) if problem is None else 0, _checksum(options),
         int(problem is not None)],
        dtype=torch.int64,
    )
    every = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(every, mine, group=group)
    every = [t.tolist() for t in every]
    if problem is not None:
        raise ValueError(problem)
    failed = [r for r, e in enumerate(every) if e[4]]
    if failed:
        raise ValueError(f"rank(s) {failed} of the group rejected their arguments")
    for what, column in [("row counts", 1), ("targets", 2), ("options", 3)]:
        values = {e[column] for e in every}
        if len(values) > 1:
            raise ValueError(
                f"vocab_parallel_cross_entropy: the ranks' {what} differ; every rank must"
                " pass the same rows, targets and options"
            )
    widths = [e[0] for e in every]
    return sum(widths[:rank]), sum(widths)


def _local_problem(logits, target, reduction):
    """What makes this rank's arguments unusable, before any collective (or None)."""
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        return "logits_shard and target must be tensors"
    if logits.device.type != "cpu" or target.device.type != "cpu":
        return "xent runs on the CPU: logits_shard and target must be CPU tensors"
    if logits.dtype not in _DTYPES:
        return f"logits_shard of dtype {logits.dtype}: float32, bfloat16 or float16 expected"
    if target.dtype not in (torch.int64, torch.int32):
        return f"target of dtype {target.dtype}: int64 or int32 expected"
    if logits.dim() != 2 or target.dim() != 1 or target.shape[0] != logits.shape[0]:
        return (
            f"logits_shard of shape {tuple(logits.shape)} and target of shape "
            f"{tuple(target.shape)}: expected (N, V_r) and (N,)"
        )
    if reduction not in ("mean", "sum", "none"):
        return f"{reduction} is not a valid value for reduction"
    return None


def _merged_statistics(cfg, logits32, target, offset, group):
    """Steps 1 and 2: this shard's statistics, all-reduced into every row's merged ones."""
    rows, width = logits32.shape
    local = _xent.shard_stats(cfg, offset, width, _view(logits32), _view(target))
    maxima = torch.empty(_xent.max_len(rows), dtype=torch.int64)
    local.pack_max(_view(maxima))
    dist.all_reduce(maxima, op=dist.ReduceOp.MAX, group=group)
    sums = torch.empty(_xent.sum_len(rows), dtype=torch.float64)
    local.pack_sums(_view(maxima), _view(sums))
    dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)
    return _xent.merge_reduced(rows, _view(maxima), _view(sums))


class _VocabParallel(torch.autograd.Function):
    """The forward communicates and forms the loss; the backward writes this rank's
    gradient shard from the merged statistics it kept (no communication)."""

    @staticmethod
    def forward(ctx, logits, target, cfg, offset, group, reduction):
        ctx.set_materialize_grads(False)
        # The crate's shard steps take float32: 16-bit shards are widened into a copy.
        z = logits.detach().to(torch.float32)
        merged = _merged_statistics(cfg, z, target, offset, group)
        if reduction == "none":
            losses = torch.empty(logits.shape[0], dtype=torch.float32)
            res = _xent.shard_loss(cfg, merged, _view(target), _view(losses))
            out = losses.to(logits.dtype)
        else:
            res = _xent.shard_loss(cfg, merged, _view(target))
            out = _loss(res, reduction, logits.dtype)
        ctx.cfg, ctx.offset, ctx.merged, ctx.reduction, ctx.res = (
            cfg, offset, merged, reduction, res,
        )
        ctx.save_for_backward(logits, target)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        if grad_out is None:
            return None, None, None, None, None, None
        logits, target = ctx.saved_tensors
        grad = logits.detach().to(torch.float32, copy=True)
        rows, width = grad.shape
        _xent.shard_backward(
            ctx.cfg, ctx.offset, width, _view(grad), _view(target), ctx.merged
        )
        _, _, counted, _, weight = ctx.res
        if ctx.reduction == "none":
            grad.mul_(grad_out.detach().to(torch.float32).unsqueeze(1))
        elif ctx.cfg.mean and weight == 0 and counted > 0:
            # Counted rows whose class weights sum to 0: PyTorch's gradient is 0 / 0.
            grad.fill_(float("nan"))
        elif grad_out.item() != 1.0:
            grad.mul_(grad_out.detach().to(torch.float32))
        return grad.to(logits.dtype), None, None, None, None, None


def vocab_parallel_cross_entropy(
    logits_shard,
    target,
    group=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    weight=None,
    z_loss=0.0,
    softcap=None,
    *,
    num_threads=None,
):
    """Cross-entropy of logits split by class over the ranks of ``group``.

    Every rank of the group calls this with the same ``target`` and options; the result
    on every rank equals ``xent.cross_entropy`` (and ``F.cross_entropy``) of the logits
    concatenated along the classes in rank order, within the crate's documented error
    (float32 sums; the merge of the statistics in float64). Differentiable with respect
    to ``logits_shard``: the backward writes this rank's ``(N, V_r)`` gradient.

    Args:
        logits_shard: ``(N, V_r)`` logits of this rank's classes, float32, bfloat16 or
            float16 (widened to float32 inside; the gradient comes back in this dtype).
        target: ``(N,)`` class indices into the whole vocabulary, int64 or int32, the
            same on every rank.
        group: the ``torch.distributed`` process group (default: the world). Its rank
            order is the order of the class ranges.
        ignore_index, reduction, label_smoothing, z_loss, softcap: as
            :func:`xent.cross_entropy`.
        weight: optional ``(V,)`` class weights over the whole vocabulary, on every rank.
        num_threads: threads for this rank's kernels (default ``torch.get_num_threads()``).

    Returns:
        The loss (a scalar, or ``(N,)`` for ``reduction="none"``) in the logits' dtype,
        the same on every rank.

    Raises:
        ValueError: on every rank together, when a rank's arguments are unusable or the
            ranks disagree on rows, targets or options; an ``IndexError`` for a target
            outside the vocabulary.
        RuntimeError: when another rank fails outside this call, once the group's
            collectives time out.
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "vocab_parallel_cross_entropy needs torch.distributed: call"
            " init_process_group first"
        )
    problem = _local_problem(logits_shard, target, reduction)
    if problem is None and weight is not None:
        if not isinstance(weight, torch.Tensor) or weight.dim() != 1:
            problem = "weight must be a 1-D tensor over the whole vocabulary"
    rows, width = (logits_shard.shape if problem is None else (0, 0))
    options = (
        ignore_index, reduction, float(label_smoothing), float(z_loss),
        None if softcap is None else float(softcap),
        None if weight is None or problem is not None else _checksum(weight.to(torch.float32)),
        None if problem is not None else str(logits_shard.dtype),
    )
    offset, classes = _agree(group, width, rows, target, options, problem)
    cfg = _config(
        classes, reduction, ignore_index, label_smoothing, weight, z_loss, softcap, num_threads
    )
    logits = logits_shard.contiguous()
    target = target.contiguous()
    return _VocabParallel.apply(logits, target, cfg, offset, group, reduction)


def data_parallel_cross_entropy(
    input,
    target,
    group=None,
    weight=None,
    ignore_index=-100,
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    *,
    num_threads=None,
):
    """This rank's share of the mean cross-entropy over the rows of every rank.

    Each rank holds its own rows (batch sizes may differ, rows may be ignored). The share
    is this rank's loss sum divided by the counted weight of all ranks (one all-reduce of
    one number), so the shares add up to exactly the mean over the whole global batch,
    ``F.cross_entropy(cat(inputs), cat(targets))``, however the rows and ignored rows are
    spread, and so do their gradients. An average of per-rank means would weigh a rank's
    rows by the inverse of its own count instead.

    To report the global mean: ``dist.all_reduce(share.detach().clone())``. To train:
    ``share.backward()``, then sum (not average) the parameters' gradients over the ranks,
    as ``dist.all_reduce(p.grad)`` does; with DDP, which averages, multiply the share by
    the world size first.

    Arguments as :func:`xent.cross_entropy`. Returns a scalar in the input's dtype; NaN
    when no rank has a counted row (as PyTorch's mean over nothing).
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "data_parallel_cross_entropy needs torch.distributed: call init_process_group first"
        )
    local = cross_entropy(
        input, target, weight, ignore_index, "sum", label_smoothing, z_loss, softcap,
        num_threads=num_threads,
    )
    flat = target.reshape(-1)
    counted = flat != ignore_index if ignore_index is not None else torch.ones_like(flat, dtype=torch.bool)
    if weight is None:
        mine = counted.sum().to(torch.float64)
    else:
        mine = weight.detach().to(torch.float64)[flat[counted].long()].sum()
    total = mine.reshape(1).clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    return (local.to(torch.float64) / total[0]).to(input.dtype)
