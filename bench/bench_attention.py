"""Attention benchmark: needle's fused FlashAttention op vs PyTorch composing the same math.

    PYTHONPATH=python /usr/bin/python3 bench/bench_attention.py [--quick]

Cases (float32, causal, B=4, H=8, T=1024, D=64, forward + backward of out.sum()):
  * needle's fused ops.scaled_dot_product_attention (the CPU kernels "attention" and
    "attention_grad": tiled, online softmax, O(T) extra memory);
  * needle's composite of the same op (kernels off: matmul, masked softmax, matmul, with the
    (B, H, T, T) logits materialized);
against PyTorch 1.13 composing the same math (q @ k^T * scale, masked_fill, softmax, @ v)
at its better thread count (1 or 2), each side in its own process
(timing.compare). Then the peak extra memory of one forward + backward step, measured as
the peak RSS (VmHWM) after the step minus the RSS before it, in a fresh process per
(side, T): needle's grows with T, the
composites' with T^2.
"""
import json
import os
import resource
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import needle as ndl  # noqa: E402
from needle import _needle  # noqa: E402
from timing import compare  # noqa: E402

torch = None
if "--needle-only" not in sys.argv and "--memory" not in sys.argv:
    try:
        import torch
    except ImportError:  # pragma: no cover
        pass

B, H, T, D = 4, 8, 1024, 64


def arrays(b=B, t=T):
    rng = np.random.default_rng(0)
    # float32 straight away: no float64 temporary raises the peak before a measured step.
    return [rng.standard_normal((b, H, t, D), dtype=np.float32) for _ in range(3)]


def needle_step(qkv, fused=True):
    q, k, v = (ndl.Tensor(a, requires_grad=True) for a in qkv)

    def fn():
        for t in (q, k, v):
            t.grad = None
        if fused:
            out = ndl.ops.scaled_dot_product_attention(q, k, v, causal=True)
            out.sum().backward()
        else:
            with _needle.kernels.disabled("attention", "attention_grad", device=ndl.cpu()):
                out = ndl.ops.scaled_dot_product_attention(q, k, v, causal=True)
                out.sum().backward()

    return fn


def torch_step(qkv):
    q, k, v = (torch.tensor(a, requires_grad=True) for a in qkv)
    t = q.shape[2]
    hidden = torch.ones(t, t, dtype=torch.bool).triu(1)
    scale = 1 / np.sqrt(q.shape[-1])

    def fn():
        for x in (q, k, v):
            x.grad = None
        s = (q @ k.transpose(-1, -2) * scale).masked_fill(hidden, float("-inf"))
        out = torch.softmax(s, -1) @ v
        out.sum().backward()

    return fn


def fused():
    qkv = arrays()
    return needle_step(qkv), torch_step(qkv) if torch else None


def composite():
    qkv = arrays()
    return needle_step(qkv, fused=False), torch_step(qkv) if torch else None


CASES = [
    (f"fused attention B{B} H{H} T{T} D{D} causal, fwd + bwd", fused),
    (f"composite attention (kernels off), same, fwd + bwd", composite),
]
FLOPS = 7.0 * B * H * T * T * D  # 2 + 5 matmuls of 2 B H T^2 D flops, halved by causal


def maxrss_mib():
    """The process's peak RSS, VmHWM: unlike ru_maxrss, which a child spawned from a large
    parent inherits across fork and exec, it belongs to this process's own memory map."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_child(side, b, t):
    """In a fresh process: MiB the peak RSS grows by over one fwd + bwd step (after the
    inputs exist), and the step's seconds."""
    import time

    global torch
    qkv = arrays(b, t)
    if side == "torch":
        import torch as torch_module
        torch = torch_module
        fn = torch_step(qkv)
    else:
        fn = needle_step(qkv, fused=side == "needle fused")
    before = max(rss_mib(), 0.0)  # the peak so far is at most a little above this
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(json.dumps([maxrss_mib() - before, seconds]))


def memory_table():
    print(f"\npeak extra memory of one fwd + bwd step (peak RSS minus RSS before, fresh process each; "
          f"H{H} D{D} causal float32)")
    print(f"{'case':<34} {'T':>6} {'extra MiB':>10} {'step s':>8}")
    sides = ["needle fused", "needle composite", "torch"]
    for b, t in [(B, 1024), (1, 1024), (1, 4096)]:
        for side in sides:
            cmd = [sys.executable, os.path.abspath(__file__), "--memory", side, str(b), str(t)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{side + f' (B{b})':<34} {t:>6} failed: {out.stderr.strip()[-200:]}")
                continue
            mib, seconds = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{side + f' (B{b})':<34} {t:>6} {mib:>10.1f} {seconds:>8.3f}")


if __name__ == "__main__":
    if "--memory" in sys.argv:
        i = sys.argv.index("--memory")
        memory_child(sys.argv[i + 1], int(sys.argv[i + 2]), int(sys.argv[i + 3]))
    else:
        compare(__file__, CASES, torch, rates={CASES[0][0]: (FLOPS / 1e9, "GFLOP/s")})
        if "--needle-only" not in sys.argv:
            memory_table()
