"""Sequence-model benchmark: needle vs PyTorch (CPU) side by side, in one run.

    PYTHONPATH=python /usr/bin/python3 bench/bench_lstm.py [--quick]

Cases (float32, SGD steps include the gradient clip and the update):
  * the LSTM language model step of the PTB recipe: LanguageModel(256, 10,000, 256,
    num_layers=2, seq_model='lstm'), bptt 35, batch 20;
  * one LSTM layer (256 -> 256) over 35 steps of batch 20, forward + backward;
  * the embedding lookup of 35 x 20 ids in a 10,000 x 256 table and its gradient.
PyTorch runs the same models (torch.nn.Embedding, LSTM, Linear) at 1 and 2 threads, its
better time counts; needle runs in a child process that never imports PyTorch; the sides
alternate for three rounds, each keeping its best (see timing.compare).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import needle as ndl  # noqa: E402
import needle.nn as nn  # noqa: E402
import needle.optim  # noqa: E402,F401
from needle.apps.models import LanguageModel  # noqa: E402
from timing import compare, torch_unless_child  # noqa: E402

torch = torch_unless_child()

VOCAB, EMB, HIDDEN, LAYERS, BPTT, BATCH = 10000, 256, 256, 2, 35, 20


class TorchLanguageModel(torch.nn.Module if torch else object):
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(VOCAB, EMB)
        self.lstm = torch.nn.LSTM(EMB, HIDDEN, LAYERS)
        self.linear = torch.nn.Linear(HIDDEN, VOCAB)

    def forward(self, x, h=None):
        out, h = self.lstm(self.embedding(x), h)
        return self.linear(out.reshape(-1, HIDDEN)), h


def lm_step():
    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCAB, (BPTT, BATCH))
    y = rng.integers(0, VOCAB, BPTT * BATCH)
    model = LanguageModel(EMB, VOCAB, HIDDEN, LAYERS, seq_model="lstm")
    opt = ndl.optim.SGD(model.parameters(), lr=1.0)
    loss_fn = nn.SoftmaxLoss()
    X, Y = ndl.Tensor(x, dtype="int64"), ndl.Tensor(y, dtype="int64")
    state = {"h": None}

    def needle_fn():
        logits, h = model(X, state["h"])
        state["h"] = tuple(t.detach() for t in h)
        loss = loss_fn(logits, Y)
        opt.reset_grad()
        loss.backward()
        opt.clip_grad_norm(0.25)
        opt.step()

    if torch is None:
        return needle_fn, None
    tmodel = TorchLanguageModel()
    topt = torch.optim.SGD(tmodel.parameters(), lr=1.0)
    tx, ty = torch.tensor(x), torch.tensor(y)
    tstate = {"h": None}

    def torch_fn():
        logits, h = tmodel(tx, tstate["h"])
        tstate["h"] = tuple(t.detach() for t in h)
        loss = torch.nn.functional.cross_entropy(logits, ty)
        topt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tmodel.parameters(), 0.25)
        topt.step()

    return needle_fn, torch_fn


def lstm_layer():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((BPTT, BATCH, EMB)).astype(np.float32)
    layer = nn.LSTM(EMB, HIDDEN)
    X = ndl.Tensor(x)

    def needle_fn():
        for p in layer.parameters():
            p.grad = None
        out, _ = layer(X)
        out.sum().backward()

    if torch is None:
        return needle_fn, None
    tlayer = torch.nn.LSTM(EMB, HIDDEN)
    tx = torch.tensor(x, requires_grad=True)

    def torch_fn():
        tlayer.zero_grad()
        tx.grad = None
        out, _ = tlayer(tx)
        out.sum().backward()

    return needle_fn, torch_fn


def embedding():
    rng = np.random.default_rng(2)
    x = rng.integers(0, VOCAB, (BPTT, BATCH))
    emb = nn.Embedding(VOCAB, EMB)
    X = ndl.Tensor(x, dtype="int64")

    def needle_fn():
        emb.weight.grad = None
        emb(X).sum().backward()

    if torch is None:
        return needle_fn, None
    temb = torch.nn.Embedding(VOCAB, EMB)
    tx = torch.tensor(x)

    def torch_fn():
        temb.zero_grad()
        temb(tx).sum().backward()

    return needle_fn, torch_fn


CASES = [
    (f"LSTM LM step ({LAYERS}x{HIDDEN}, vocab {VOCAB:,}, bptt {BPTT}, batch {BATCH}), SGD", lm_step),
    (f"LSTM layer {EMB}->{HIDDEN}, {BPTT} steps x batch {BATCH}, fwd + bwd", lstm_layer),
    (f"Embedding {VOCAB:,} x {EMB}, {BPTT}x{BATCH} ids, fwd + bwd", embedding),
]

if __name__ == "__main__":
    compare(__file__, CASES, torch)
