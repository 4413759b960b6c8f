"""PyTorch's CPU language-model head, for comparison with `examples/linear_throughput.rs`.

    python benches/linear_torch.py [N V D]

Times `F.linear` + `F.cross_entropy` + `backward` (gradients of hidden and weight) on the
same shape and values (uniform in [-0.1, 0.1), targets i * 7919 % V) on 1 and 2 threads
(medians of 3), and the extra peak memory of one step (VmHWM after the step less VmHWM
once the inputs and gradients exist), each in a child process. Needs only torch.
"""

import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def peak_rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def inputs(n, v, d):
    g = torch.Generator().manual_seed(1)
    h = ((torch.rand(n, d, generator=g) - 0.5) * 0.2).requires_grad_()
    w = ((torch.rand(v, d, generator=g) - 0.5) * 0.2).requires_grad_()
    t = (torch.arange(n) * 7919) % v
    return h, w, t


def step(h, w, t):
    h.grad = None
    w.grad = None
    loss = F.cross_entropy(F.linear(h, w), t)
    loss.backward()
    return loss


def main():
    args = [int(a) for a in sys.argv[1:] if a.isdigit()]
    n, v, d = args if len(args) == 3 else (2048, 32000, 512)
    if "--peak" in sys.argv:
        torch.set_num_threads(2)
        h, w, t = inputs(n, v, d)
        h.grad, w.grad = torch.ones_like(h), torch.ones_like(w)
        before = peak_rss()
        loss = F.cross_entropy(F.linear(h, w), t)
        loss.backward()
        print(f"{(peak_rss() - before) / 2**20:.1f}")
        return
    flops = 6 * n * v * d
    print(f"torch {torch.__version__}: N {n} V {v} d {d}: 6NVd = {flops / 1e9:.1f} GFLOP")
    h, w, t = inputs(n, v, d)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        step(h, w, t)
        times = []
        for _ in range(3):
            s = time.perf_counter()
            step(h, w, t)
            times.append(time.perf_counter() - s)
        secs = sorted(times)[1]
        print(f"{threads:7}  torch       {secs:8.3f}  {flops / secs / 1e9:7.1f} GFLOP/s")
    out = subprocess.run([sys.executable, __file__, "--peak", str(n), str(v), str(d)],
                         capture_output=True, text=True, check=True)
    print(f"extra peak memory of one step: {out.stdout.strip()} MiB")


if __name__ == "__main__":
    main()
