"""A classifier whose output layer is split by class over 2 processes, trained with
``xent.distributed.vocab_parallel_cross_entropy``, next to the same model in one process.

    python python/examples/vocab_parallel.py            # train on the Digits data
    python python/examples/vocab_parallel.py --bench    # time per step, bytes sent

Training: 1797 8x8 digit images (examples/train/data/digits.csv, UCI), a hidden layer
of 32 tanh units, then the head: 10 classes, rank 0 holding classes 0-5 and rank 1
classes 6-9 (an uneven split), as Megatron-LM splits a vocabulary. Each rank keeps the
hidden layer (the same on both) and its rows of the head; the loss's statistics are
all-reduced inside the call, and the hidden layer's gradient, to which both shards
contribute, is summed with one more all-reduce. The script prints each step's loss on
both ranks and in one process; they agree to float32 rounding.

``--bench``: 2048 x 32000 float32 logits split evenly over the 2 ranks; the median time
of a step (loss and gradient shard) and the bytes each rank sends, against gathering the
logits on rank 0, computing the loss there and scattering the gradient back.

The ranks are processes of this machine talking over gloo on the loopback interface.
"""

import argparse
import os
import pathlib
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import xent
from xent.distributed import vocab_parallel_cross_entropy

DATA = pathlib.Path(__file__).resolve().parents[2] / "examples" / "train" / "data" / "digits.csv"
SPLIT = [(0, 6), (6, 10)]
STEPS = 40
HIDDEN = 32


def load():
    rows = DATA.read_text().strip().splitlines()[1:]
    table = torch.tensor([[float(v) for v in r.split(",")] for r in rows])
    x = table[:, :64] / 16.0
    y = table[:, 64].long()
    return x, y


def init(seed=0):
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(64, HIDDEN, generator=g) * 0.3
    b1 = torch.zeros(HIDDEN)
    w2 = torch.randn(10, HIDDEN, generator=g) * 0.3
    return w1, b1, w2


def train_one_process(x, y, lr=0.5):
    w1, b1, w2 = (p.clone().requires_grad_() for p in init())
    losses = []
    for _ in range(STEPS):
        h = torch.tanh(x @ w1 + b1)
        loss = xent.cross_entropy(h @ w2.T, y)
        for p in (w1, b1, w2):
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in (w1, b1, w2):
                p -= lr * p.grad
        losses.append(loss.item())
    return losses


def train_rank(rank, x, y, lr=0.5):
    lo, hi = SPLIT[rank]
    w1, b1, w2 = init()
    w1, b1 = w1.requires_grad_(), b1.requires_grad_()
    w2 = w2[lo:hi].clone().requires_grad_()  # this rank's classes of the head
    losses = []
    for _ in range(STEPS):
        h = torch.tanh(x @ w1 + b1)
        loss = vocab_parallel_cross_entropy(h @ w2.T, y)
        for p in (w1, b1, w2):
            p.grad = None
        loss.backward()
        # The hidden layer feeds every shard: its gradient is the sum of the ranks'.
        for p in (w1, b1):
            dist.all_reduce(p.grad)
        with torch.no_grad():
            for p in (w1, b1, w2):
                p -= lr * p.grad
        losses.append(loss.item())
    return losses


def bench_rank(rank, world, rows=2048, classes=32000, repeats=9):
    g = torch.Generator().manual_seed(rank)
    width = classes // world
    shard = (torch.randn(rows, width, generator=g) * 4).requires_grad_()
    target = torch.randint(0, classes, (rows,), generator=torch.Generator().manual_seed(7))

    def ours():
        shard.grad = None
        vocab_parallel_cross_entropy(shard, target).backward()

    def gathered():
        # The logits to rank 0, the loss there, the gradient back.
        parts = [torch.empty_like(shard) for _ in range(world)] if rank == 0 else None
        dist.gather(shard.detach(), parts, dst=0)
        if rank == 0:
            whole = torch.cat(parts, dim=1).requires_grad_()
            xent.cross_entropy(whole, target).backward()
            grads = list(whole.grad.split(width, dim=1))
            grads = [t.contiguous() for t in grads]
        else:
            grads = None
        mine = torch.empty_like(shard)
        dist.scatter(mine, grads, src=0)

    times = {}
    for name, step in [("vocab-parallel", ours), ("gather to rank 0", gathered)]:
        step()
        samples = []
        for _ in range(repeats):
            dist.barrier()
            start = time.perf_counter()
            step()
            samples.append(time.perf_counter() - start)
        times[name] = statistics.median(samples)
    # Bytes this rank sends per step: a 5-value all-gather (sizes and checks), the MAX
    # tensor (int64) and the SUM tensor (float64); for the gather, its shard (and rank 0
    # the other ranks' gradients).
    sent = {
        "vocab-parallel": 8 * (5 + (2 * rows + 2) + (5 * rows + 65)),
        "gather to rank 0": 4 * rows * width,
    }
    return times, sent


def rank_main(rank, world, port, args, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        if args.bench:
            out.put((rank, bench_rank(rank, world)))
        else:
            x, y = load()
            out.put((rank, train_rank(rank, x, y)))
    finally:
        dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0].strip())
    parser.add_argument("--bench", action="store_true", help="time a step instead of training")
    args = parser.parse_args()
    world = 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=rank_main, args=(r, world, port, args, out)) for r in range(world)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=600) for _ in range(world))
    for p in procs:
        p.join(timeout=60)
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit("a rank failed")
    if args.bench:
        times, sent = results[0]
        print("2048 x 32000 float32 over 2 ranks (1 thread each), median of 9")
        print(f"{'':>18} {'ms/step':>9} {'bytes sent/rank':>16}")
        for name in times:
            print(f"{name:>18} {1e3 * times[name]:9.1f} {sent[name]:16,d}")
        ratio = times["gather to rank 0"] / times["vocab-parallel"]
        print(f"vocab-parallel is {ratio:.1f}x faster and sends "
              f"{sent['gather to rank 0'] / sent['vocab-parallel']:.0f}x fewer bytes")
        return
    x, y = load()
    single = train_one_process(x, y)
    print(f"{'step':>4} {'rank 0':>10} {'rank 1':>10} {'1 process':>10}")
    for step in range(0, STEPS, 5):
        print(f"{step:4d} {results[0][step]:10.6f} {results[1][step]:10.6f} {single[step]:10.6f}")
    worst = max(abs(a - b) for r in (0, 1) for a, b in zip(results[r], single))
    print(f"final loss {single[-1]:.4f}; largest difference from one process {worst:.1e}")
    if worst > 1e-4 or single[-1] > 0.5 * single[0]:
        raise SystemExit("the split head did not train as the single-process one")


if __name__ == "__main__":
    main()
