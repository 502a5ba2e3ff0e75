"""The language-model job (make lm) side by side with PyTorch: validation perplexity and time.

    PYTHONPATH=python /usr/bin/python3 bench/bench_lm.py [--steps N] [lm_demo options]

Builds the job's LanguageModel (needle.apps.lm_demo's defaults, or the options given),
copies its initial weights into the same model written with torch.nn (Embedding, LSTM,
Linear), and trains both on the same KJV windows with the same schedule (SGD, lr decayed
linearly to a tenth, gradient norm clipped), each in its own process (PyTorch on TORCH_THREADS threads, default 1), then prints each
side's validation perplexity, training time and the ratios. The two should agree within
a few percent: they differ only in floating-point rounding.
"""
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from needle.apps import lm_demo  # noqa: E402


def build_needle(args, vocab):
    from needle.apps.models import LanguageModel

    np.random.seed(args.seed)
    return LanguageModel(args.embedding, vocab, args.hidden, args.layers, seq_model="lstm")


def run_needle(args):
    corpus, train, valid = lm_demo.load_corpus(args, None)
    model = build_needle(args, len(corpus.dictionary))
    start = time.perf_counter()
    steps = lm_demo.train_steps(model, train, args, None)
    seconds = time.perf_counter() - start
    return {"ppl": math.exp(lm_demo.evaluate(model, valid, args.bptt, None)), "seconds": seconds, "steps": steps}


def run_torch(args):
    import torch

    # PyTorch 1.13's CPU LSTM is at its fastest on one thread here (about twice as slow on two).
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
    corpus, train, valid = lm_demo.load_corpus(args, None)
    vocab = len(corpus.dictionary)
    ref = build_needle(args, vocab)  # the same initial weights, copied

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(vocab, args.embedding)
            self.lstm = torch.nn.LSTM(args.embedding, args.hidden, args.layers)
            self.linear = torch.nn.Linear(args.hidden, vocab)

        def forward(self, x, h=None):
            out, h = self.lstm(self.embedding(x), h)
            return self.linear(out.reshape(-1, args.hidden)), h

    model = Model()
    with torch.no_grad():
        model.embedding.weight.copy_(torch.tensor(ref.embedding.weight.numpy()))
        for k, cell in enumerate(ref.seq_model.lstm_cells):
            getattr(model.lstm, f"weight_ih_l{k}").copy_(torch.tensor(cell.W_ih.numpy().T))
            getattr(model.lstm, f"weight_hh_l{k}").copy_(torch.tensor(cell.W_hh.numpy().T))
            getattr(model.lstm, f"bias_ih_l{k}").copy_(torch.tensor(cell.bias_ih.numpy()))
            getattr(model.lstm, f"bias_hh_l{k}").copy_(torch.tensor(cell.bias_hh.numpy()))
        model.linear.weight.copy_(torch.tensor(ref.linear.weight.numpy().T))
        model.linear.bias.copy_(torch.tensor(ref.linear.bias.numpy().reshape(-1)))

    def windows(data):
        for i in range(0, data.shape[0] - 1, args.bptt):
            n = min(args.bptt, data.shape[0] - 1 - i)
            yield torch.tensor(data[i:i + n], dtype=torch.long), torch.tensor(data[i + 1:i + 1 + n].reshape(-1), dtype=torch.long)

    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    step, start = 0, time.perf_counter()
    deadline = start + 60 * args.minutes
    while step < args.steps and time.perf_counter() < deadline:
        h = None
        for x, y in windows(train):
            if step >= args.steps or time.perf_counter() >= deadline:
                break
            for group in opt.param_groups:
                group["lr"] = args.lr * (1 - 0.9 * step / args.steps)
            logits, h = model(x, h)
            h = tuple(t.detach() for t in h)
            loss = torch.nn.functional.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            step += 1
    seconds = time.perf_counter() - start
    total, count, h = 0.0, 0, None
    with torch.no_grad():
        for x, y in windows(valid):
            logits, h = model(x, h)
            total += float(torch.nn.functional.cross_entropy(logits, y)) * len(y)
            count += len(y)
    return {"ppl": math.exp(total / count), "seconds": seconds, "steps": step,
            "threads": torch.get_num_threads()}


def main():
    argv = [a for a in sys.argv[1:] if a not in ("--needle-only", "--torch-only")]
    if "--minutes" not in argv:  # both sides run every step, however long that takes
        argv += ["--minutes", "60"]
    args = lm_demo.parse_args(argv)
    if "--needle-only" in sys.argv or "--torch-only" in sys.argv:
        result = run_needle(args) if "--needle-only" in sys.argv else run_torch(args)
        print(json.dumps(result))
        return
    sides = {}
    for side in ("needle", "torch"):
        out = subprocess.run([sys.executable, os.path.abspath(__file__), f"--{side}-only", *argv],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{side} run failed:\n{out.stderr}")
        sides[side] = json.loads(out.stdout.strip().splitlines()[-1])
    n, t = sides["needle"], sides["torch"]
    print(f"LSTM language model on the KJV: embedding {args.embedding}, {args.layers} x {args.hidden}, "
          f"bptt {args.bptt}, batch {args.batch_size}, SGD lr {args.lr:g} (linear decay), clip {args.clip:g}")
    print(f"{'':8}{'steps':>7}{'train s':>10}{'valid ppl':>11}")
    for name, r in sides.items():
        print(f"{name:8}{r['steps']:>7}{r['seconds']:>10.1f}{r['ppl']:>11.1f}")
    print(f"needle / torch: time {n['seconds'] / t['seconds']:.2f}x, perplexity {n['ppl'] / t['ppl']:.3f}x "
          f"(torch at {t['threads']} threads)")
    if n["steps"] != t["steps"]:
        print("note: the sides ran different numbers of steps (--minutes ran out): perplexities are not comparable")


if __name__ == "__main__":
    main()
