"""Forward + backward time of xent.cross_entropy against F.cross_entropy, in one run.

    python python/bench.py            # every shape, dtype and thread count below
    python python/bench.py --quick    # one shape, for a smoke test
    python python/bench.py --shape 16384x1000 --repeats 15

For each shape (rows x classes), dtype (float32, bfloat16) and thread count (1, 2), the
median over repeats of `loss = f(logits, target); loss.backward()`, where `logits` is a
view of a leaf tensor (so the backward hands the gradient straight to the leaf, as after
a linear layer, without a copy), for:

  torch     F.cross_entropy + autograd
  xent      xent.cross_entropy (the gradient into a fresh buffer)
  inplace   xent.cross_entropy(..., inplace_backward=True)
  kernel    the crate's fused call alone on the same memory (no Python, no autograd)
  fault     torch.empty of the logits' size then one write per page: what a fresh
            gradient buffer costs before any arithmetic

and the ratios torch / xent and torch / inplace. The machine is shared and noisy: compare
ratios within one run, never figures across runs.
"""

import argparse
import os
import statistics
import sys
import time

# This file sits beside the package's source folder `xent/`, which has no compiled
# extension: import the installed package instead.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import xent  # noqa: E402
from xent import _xent  # noqa: E402
from xent._functional import _DTYPES, _view  # noqa: E402

SHAPES = [(4096, 32000), (16384, 1000), (1048576, 3)]


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        setup = fn()
        start = time.perf_counter()
        setup()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def case(rows, classes, dtype, repeats):
    g = torch.Generator().manual_seed(0)
    base = (torch.randn(rows, classes, generator=g) * 3).to(dtype)
    target = torch.randint(0, classes, (rows,), generator=g)

    def training_step(loss_fn, **kw):
        def prepare():
            leaf = base.clone().requires_grad_()
            z = leaf.view(rows, classes)

            def step():
                loss_fn(z, target, **kw).backward()

            return step

        return prepare

    def kernel():
        z = base.clone()
        cfg = _xent.Config(classes, "mean", -100, 0.0, None, 0.0, None, torch.get_num_threads())
        return lambda: _xent.forward_backward(cfg, _view(z), _DTYPES[dtype], _view(target))

    def fault():
        def run():
            buf = torch.empty(rows, classes, dtype=dtype)
            buf.view(-1)[:: max(1, 4096 // buf.element_size())] = 0

        return run

    return {
        "torch": median_time(training_step(F.cross_entropy), repeats),
        "xent": median_time(training_step(xent.cross_entropy), repeats),
        "inplace": median_time(
            training_step(xent.cross_entropy, inplace_backward=True), repeats
        ),
        "kernel": median_time(kernel, repeats),
        "fault": median_time(fault, repeats),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small shape, 3 repeats")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--shape", action="append", help="ROWSxCLASSES, instead of the list")
    args = ap.parse_args()
    shapes = [(1024, 32000)] if args.quick else SHAPES
    if args.shape:
        shapes = [tuple(int(x) for x in s.split("x")) for s in args.shape]
    repeats = 3 if args.quick else args.repeats
    print(
        f"{'shape':>14} {'dtype':>8} {'thr':>3} {'torch s':>9} {'xent s':>9} "
        f"{'inplace s':>9} {'kernel s':>9} {'fault s':>9} {'x faster':>8} {'x inplace':>9}"
    )
    for rows, classes in shapes:
        for dtype in [torch.float32, torch.bfloat16]:
            for threads in [1, 2]:
                torch.set_num_threads(threads)
                r = case(rows, classes, dtype, repeats)
                print(
                    f"{rows:>7}x{classes:<6} {str(dtype)[6:]:>8} {threads:>3} "
                    f"{r['torch']:9.4f} {r['xent']:9.4f} {r['inplace']:9.4f} "
                    f"{r['kernel']:9.4f} {r['fault']:9.4f} "
                    f"{r['torch'] / r['xent']:8.1f} {r['torch'] / r['inplace']:9.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
