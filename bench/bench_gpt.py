"""GPT generation speed: tokens/s with the KV cache and without it, needle vs a PyTorch GPT
of the same size with its own cache.

    PYTHONPATH=python /usr/bin/python3 bench/bench_gpt.py [--quick]

GPT(vocab 2,048, block_size 1,024, 4 layers, 4 heads, width 128), one sequence, an
8-token prompt, 512 new tokens (--quick: 128), greedy. Without the cache every step
reruns the whole context; with it each new token runs alone against the cached keys
and values. PyTorch runs the same architecture written with torch ops (preallocated
cache, written in place) at 1 and 2 threads, its better time counts; needle runs in a
child process that never imports PyTorch.
"""
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

VOCAB, BLOCK, LAYERS, HEADS, WIDTH, PROMPT = 2048, 1024, 4, 4, 128, 8
NEW = 128 if "--quick" in sys.argv else 512


def needle_rates():
    import needle as ndl
    from needle.apps.models import GPT

    np.random.seed(0)
    model = GPT(VOCAB, BLOCK, LAYERS, HEADS, WIDTH)
    prompt = ndl.Tensor(np.random.randint(0, VOCAB, (1, PROMPT)), dtype="int64")
    model.generate(prompt, 4, temperature=0)  # warm up
    rates = {}
    for cache in (True, False):
        start = time.perf_counter()
        model.generate(prompt, NEW, temperature=0, use_cache=cache)
        rates["cached" if cache else "uncached"] = NEW / (time.perf_counter() - start)
    return rates


def torch_rates(torch):
    F = torch.nn.functional

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = torch.nn.LayerNorm(WIDTH), torch.nn.LayerNorm(WIDTH)
            self.qkv, self.proj = torch.nn.Linear(WIDTH, 3 * WIDTH), torch.nn.Linear(WIDTH, WIDTH)
            self.fc1, self.fc2 = torch.nn.Linear(WIDTH, 4 * WIDTH), torch.nn.Linear(4 * WIDTH, WIDTH)
            self.cache = None

        def forward(self, x, start):
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).reshape(b, t, 3, HEADS, d // HEADS).permute(2, 0, 3, 1, 4)
            if self.cache is not None:
                self.cache[0][:, :, start:start + t] = k
                self.cache[1][:, :, start:start + t] = v
                k, v = self.cache[0][:, :, :start + t], self.cache[1][:, :, :start + t]
            logits = q @ k.transpose(-1, -2) / math.sqrt(d // HEADS)
            tq, tk = logits.shape[-2:]
            logits = logits.masked_fill(torch.ones(tq, tk, dtype=torch.bool).triu(tk - tq + 1), float("-inf"))
            y = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
            x = x + self.proj(y)
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))

    class TorchGPT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = torch.nn.Embedding(VOCAB, WIDTH), torch.nn.Embedding(BLOCK, WIDTH)
            self.blocks = torch.nn.ModuleList([Block() for _ in range(LAYERS)])
            self.ln_f = torch.nn.LayerNorm(WIDTH)

        def forward(self, idx, start=0):
            x = self.wte(idx) + self.wpe(torch.arange(start, start + idx.shape[1]))
            for block in self.blocks:
                x = block(x, start)
            return self.ln_f(x) @ self.wte.weight.T

        @torch.no_grad()
        def generate(self, idx, new, use_cache):
            shape = (idx.shape[0], HEADS, BLOCK, WIDTH // HEADS)
            for block in self.blocks:
                block.cache = (torch.zeros(shape), torch.zeros(shape)) if use_cache else None
            fed = 0
            for _ in range(new):
                if use_cache:
                    logits = self(idx[:, fed:], fed)
                    fed = idx.shape[1]
                else:
                    logits = self(idx)
                idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], 1)
            return idx

    torch.manual_seed(0)
    model = TorchGPT().eval()
    prompt = torch.randint(0, VOCAB, (1, PROMPT))
    best = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        model.generate(prompt, 4, True)
        for cache in (True, False):
            start = time.perf_counter()
            model.generate(prompt, NEW, cache)
            rate = NEW / (time.perf_counter() - start)
            key = "cached" if cache else "uncached"
            if rate > best.get(key, (0, 0))[0]:
                best[key] = (rate, threads)
    return best


def main():
    if "--needle-only" in sys.argv:
        print(json.dumps(needle_rates()))
        return
    cmd = [sys.executable, os.path.abspath(__file__), "--needle-only"] + sys.argv[1:]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"needle benchmark failed:\n{out.stderr}")
    needle = json.loads(out.stdout.strip().splitlines()[-1])
    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    theirs = torch_rates(torch) if torch else {}
    print(f"GPT generation, {LAYERS} layers x {HEADS} heads, width {WIDTH}, vocab {VOCAB:,}: "
          f"{PROMPT}-token prompt + {NEW} new tokens, greedy, tokens/s")
    print(f"{'':<12} {'needle':>10} {'torch':>10} {'thr':>4} {'needle/torch':>13}")
    for key in ("cached", "uncached"):
        rate, threads = theirs.get(key, (float("nan"), 0))
        print(f"{key:<12} {needle[key]:>10.1f} {rate:>10.1f} {threads:>4} {needle[key] / rate:>12.2f}x")
    print(f"needle: the cache is {needle['cached'] / needle['uncached']:.1f}x faster than rerunning the context")


if __name__ == "__main__":
    main()
