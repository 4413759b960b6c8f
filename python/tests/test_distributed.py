"""``xent.distributed`` in real processes: gloo on the loopback interface, 2 and 4 ranks.

Each test starts its ranks with ``torch.multiprocessing`` (spawn), runs many cases in one
process group (starting one costs seconds), and compares every rank's loss and gradient
shard with one process: ``xent.cross_entropy`` on the concatenated logits, and
``F.cross_entropy`` in float64 for the options PyTorch has. Every wait is bounded: a rank
that hangs fails the test instead of the run.
"""

import io
import math
import queue
import socket
import traceback
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import xent
from xent.distributed import data_parallel_cross_entropy, vocab_parallel_cross_entropy

# A rank's collectives give up after this long (the failure tests rely on it).
GROUP_TIMEOUT = timedelta(seconds=20)
# The parent gives up on the ranks after this long.
RUN_TIMEOUT = 240.0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank, world, port, fn, args, results):
    import os

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo"
    )
    torch.set_num_threads(1)
    try:
        dist.init_process_group(
            "gloo", rank=rank, world_size=world, timeout=GROUP_TIMEOUT
        )
        try:
            # By value (torch.save): a queue would pass tensors as shared-memory handles
            # that die with this process.
            buf = io.BytesIO()
            torch.save(fn(rank, world, *args), buf)
            results.put((rank, "ok", buf.getvalue()))
        finally:
            dist.destroy_process_group()
    except BaseException as e:  # reported to the parent, whatever it is
        results.put((rank, "error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


def run(world, fn, *args, timeout=RUN_TIMEOUT):
    """Runs ``fn(rank, world, *args)`` on ``world`` ranks; returns their results by rank
    (an exception's text for a rank that raised)."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_rank_main, args=(r, world, port, fn, args, results))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    out = {}
    try:
        for _ in range(world):
            rank, status, value = results.get(timeout=timeout)
            if status == "ok":
                value = torch.load(io.BytesIO(value), weights_only=False)
            out[rank] = (status, value)
    except queue.Empty:
        pytest.fail(f"ranks {sorted(set(range(world)) - set(out))} did not finish in {timeout} s")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return [out[r] for r in range(world)]


def values(results):
    """The ranks' results, failing the test with any rank's error."""
    for rank, (status, value) in enumerate(results):
        assert status == "ok", f"rank {rank} failed:\n{value}"
    return [v for _, v in results]


def split(classes, world, uneven):
    """Class ranges of ``world`` ranks: uneven ones include an empty range (4 ranks)."""
    if uneven and world == 2:
        cuts = [0, classes // 3, classes]
    elif uneven:
        cuts = [0, 5, 5, classes - 9, classes]  # rank 1 holds no class
    else:
        cuts = [classes * r // world for r in range(world + 1)]
    return [(cuts[r], cuts[r + 1]) for r in range(world)]


CLASSES = 53
ROWS = 29


def batch(seed, dtype):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(ROWS, CLASSES, generator=g) * 4).to(dtype)
    target = torch.randint(0, CLASSES, (ROWS,), generator=g)
    target[[3, 11, 12]] = -100
    weight = torch.rand(CLASSES, generator=g) + 0.5
    return logits, target, weight


CASES = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(label_smoothing=0.1),
    dict(weight=True),
    dict(weight=True, label_smoothing=0.2, reduction="sum"),
    dict(z_loss=1e-3),
    dict(softcap=5.0),
    dict(ignore_index=None),
    dict(weight=True, label_smoothing=0.05, z_loss=1e-4, softcap=8.0, reduction="none"),
]


def _options(case, weight):
    o = dict(case)
    if o.pop("weight", False):
        o["weight"] = weight
    return o


def _vocab_cases(rank, world, uneven):
    """Every case and dtype on this rank: its loss and gradient shard, from an upstream
    gradient that is not 1 (per row for reduction="none")."""
    out = []
    lo, hi = split(CLASSES, world, uneven)[rank]
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for i, case in enumerate(CASES):
            logits, target, weight = batch(i, dtype)
            if case.get("ignore_index", -100) is None:
                target = target.clamp(min=0)
            shard = logits[:, lo:hi].clone().requires_grad_()
            loss = vocab_parallel_cross_entropy(shard, target, **_options(case, weight))
            up = torch.linspace(0.5, 2.0, ROWS) if loss.dim() else torch.tensor(0.75)
            (loss.float() * up).sum().backward()
            out.append((str(dtype), i, loss.detach(), shard.grad))
    return out


@pytest.mark.parametrize("world,uneven", [(2, False), (2, True), (4, True)])
def test_vocab_parallel_equals_one_process(world, uneven):
    ranks = values(run(world, _vocab_cases, uneven))
    for k, (dtype_name, i, _, _) in enumerate(ranks[0]):
        dtype = getattr(torch, dtype_name.split(".")[1])
        case = CASES[i]
        logits, target, weight = batch(i, dtype)
        if case.get("ignore_index", -100) is None:
            target = target.clamp(min=0)
        whole = logits.clone().requires_grad_()
        want = xent.cross_entropy(whole, target, **_options(case, weight))
        up = torch.linspace(0.5, 2.0, ROWS) if want.dim() else torch.tensor(0.75)
        (want.float() * up).sum().backward()
        grad = torch.cat([r[k][3] for r in ranks], dim=1)
        what = f"{world} ranks, uneven {uneven}, {dtype_name}, case {case}"
        # Every rank holds the same loss.
        for r in ranks[1:]:
            assert torch.equal(r[k][2], ranks[0][k][2]), what
        # Within the 16-bit dtype's rounding of the results (float32: the kernels' error).
        tol = {torch.float32: 2e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
        torch.testing.assert_close(ranks[0][k][2].float(), want.detach().float(), rtol=tol, atol=tol, msg=what)
        torch.testing.assert_close(grad.float(), whole.grad.float(), rtol=tol, atol=tol * 1e-2, msg=what)
        if dtype == torch.float32 and "z_loss" not in case and "softcap" not in case:
            # And PyTorch's own, in float64.
            o = _options(case, weight)
            if o.get("ignore_index", -100) is None:
                o.pop("ignore_index")
            ref = logits.double().requires_grad_()
            if "weight" in o:
                o["weight"] = o["weight"].double()
            theirs = F.cross_entropy(ref, target, **o)
            (theirs * up.double()).sum().backward()
            torch.testing.assert_close(ranks[0][k][2].double(), theirs.detach(), rtol=2e-5, atol=2e-5, msg=what)
            torch.testing.assert_close(grad.double(), ref.grad, rtol=1e-4, atol=1e-7, msg=what)


def _masked(logits, target):
    """Row 0 masked (-inf) but for its target, the last class; a NaN in row 1's class 0."""
    z = logits.clone()
    z[0, :] = -math.inf
    z[0, CLASSES - 1] = 0.0
    z[1, 0] = math.nan
    t = target.clamp(min=0)
    t[0] = CLASSES - 1
    return z, t


def _edge_cases(rank, world):
    out = {}
    lo, hi = split(CLASSES, world, True)[rank]
    logits, target, _ = batch(7, torch.float32)
    # Every row ignored: NaN mean (as PyTorch), zero gradient.
    shard = logits[:, lo:hi].clone().requires_grad_()
    loss = vocab_parallel_cross_entropy(shard, torch.full((ROWS,), -100))
    loss.backward()
    out["ignored"] = (loss.item(), shard.grad.abs().max().item() if shard.numel() else 0.0)
    # No rows.
    empty = torch.zeros(0, hi - lo, requires_grad=True)
    out["empty"] = vocab_parallel_cross_entropy(empty, torch.zeros(0, dtype=torch.int64), reduction="sum").item()
    # -inf masks across shards, a NaN in rank 0's shard poisons only its row.
    z, t = _masked(logits, target)
    rows = vocab_parallel_cross_entropy(z[:, lo:hi], t, reduction="none")
    out["masked"] = rows
    # A target outside the vocabulary: IndexError on every rank.
    try:
        vocab_parallel_cross_entropy(logits[:, lo:hi], torch.full((ROWS,), CLASSES))
        out["range"] = "no error"
    except IndexError as e:
        out["range"] = str(e)
    # Ranks that disagree: different targets on rank 0.
    t = target.clone()
    if rank == 0:
        t[0] = (t[0] + 1) % CLASSES
    try:
        vocab_parallel_cross_entropy(logits[:, lo:hi], t)
        out["disagree"] = "no error"
    except ValueError as e:
        out["disagree"] = str(e)
    # A bad argument on the last rank only: every rank raises, none waits.
    bad = logits[:, lo:hi].double() if rank == world - 1 else logits[:, lo:hi]
    try:
        vocab_parallel_cross_entropy(bad, target)
        out["bad"] = "no error"
    except ValueError as e:
        out["bad"] = str(e)
    # The group still works afterwards.
    out["after"] = vocab_parallel_cross_entropy(logits[:, lo:hi], target).item()
    return out


def test_vocab_parallel_edge_cases_and_errors():
    ranks = values(run(4, _edge_cases))
    logits, target, _ = batch(7, torch.float32)
    for rank, r in enumerate(ranks):
        assert math.isnan(r["ignored"][0]) and r["ignored"][1] == 0.0
        assert r["empty"] == 0.0
        want = xent.cross_entropy(*_masked(logits, target), reduction="none")
        torch.testing.assert_close(r["masked"], want, rtol=2e-5, atol=2e-5, equal_nan=True)
        assert r["masked"][0] == 0.0 and math.isnan(r["masked"][1])
        assert "outside" in r["range"], r["range"]
        assert "targets differ" in r["disagree"], r["disagree"]
        if rank == 3:
            assert "float32, bfloat16 or float16" in r["bad"], r["bad"]
        else:
            assert "rank(s) [3]" in r["bad"], r["bad"]
        want = xent.cross_entropy(logits, target).item()
        assert abs(r["after"] - want) <= 2e-5 * abs(want)


def _dies_before_the_call(rank, world):
    if rank == 1:
        raise RuntimeError("rank 1 failed before the loss")
    logits, target, _ = batch(0, torch.float32)
    return vocab_parallel_cross_entropy(logits[:, :20], target).item()


def test_a_failing_rank_does_not_hang_the_others():
    (s0, v0), (s1, v1) = run(2, _dies_before_the_call, timeout=120)
    assert (s0, s1) == ("error", "error")
    assert "rank 1 failed before the loss" in v1
    # Rank 0 gave up when its collective timed out or saw its peer leave: an error,
    # in bounded time.
    assert "RuntimeError" in v0 or "DistBackendError" in v0, v0


def _data_parallel(rank, world, sizes):
    g = torch.Generator().manual_seed(100)
    logits = torch.randn(sum(sizes), CLASSES, generator=g) * 3
    target = torch.randint(0, CLASSES, (sum(sizes),), generator=g)
    target[::5] = -100
    weight = torch.rand(CLASSES, generator=g) + 0.5
    lo = sum(sizes[:rank])
    mine = logits[lo:lo + sizes[rank]].clone().requires_grad_()
    out = []
    for w in (None, weight):
        mine.grad = None
        share = data_parallel_cross_entropy(mine, target[lo:lo + sizes[rank]], weight=w, label_smoothing=0.1)
        share.backward()
        total = share.detach().clone()
        dist.all_reduce(total)
        out.append((share.item(), total.item(), mine.grad.clone()))
    return out


def test_data_parallel_shares_add_up_to_the_global_mean():
    sizes = [7, 12, 0, 18]
    ranks = values(run(4, _data_parallel, sizes))
    g = torch.Generator().manual_seed(100)
    logits = torch.randn(sum(sizes), CLASSES, generator=g) * 3
    target = torch.randint(0, CLASSES, (sum(sizes),), generator=g)
    target[::5] = -100
    weight = torch.rand(CLASSES, generator=g) + 0.5
    for k, w in enumerate((None, weight)):
        ref = logits.double().requires_grad_()
        want = F.cross_entropy(ref, target, weight=None if w is None else w.double(), label_smoothing=0.1)
        want.backward()
        shares = [r[k][0] for r in ranks]
        assert abs(sum(shares) - want.item()) <= 1e-5 * want.item()
        for r in ranks:
            assert abs(r[k][1] - want.item()) <= 1e-5 * want.item()
        grad = torch.cat([r[k][2] for r in ranks])
        torch.testing.assert_close(grad.double(), ref.grad, rtol=1e-4, atol=1e-8)
    # The average of per-rank means is not the global mean here (uneven counts).
    means = [
        F.cross_entropy(logits[a:a + n], target[a:a + n], label_smoothing=0.1).item()
        for a, n in zip([0, 7, 19, 19], sizes) if n
    ]
    assert abs(sum(means) / len(means) - sum(r[0][0] for r in ranks)) > 1e-3


def test_without_a_process_group_the_call_says_so():
    with pytest.raises(RuntimeError, match="init_process_group"):
        vocab_parallel_cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64))
