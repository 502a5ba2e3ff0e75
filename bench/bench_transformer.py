"""Transformer training steps: needle vs PyTorch (CPU) side by side, in one run.

    PYTHONPATH=python /usr/bin/python3 bench/bench_transformer.py [--quick]

Cases (float32, one optimizer step each, forward + backward + update):
  * the course's transformer language model: LanguageModel(128, 10,000, 256,
    num_layers=2, seq_model='transformer', seq_len=64) on 64 x 16 ids, SGD;
  * ViT on Fashion-MNIST batches (28x28x1, 7x7 patches, dim 64, depth 4, 4 heads,
    MLP 128) of 128 images, Adam.
PyTorch runs the same networks written with torch ops (the course's attention composed
from matmul and softmax, as PyTorch 1.13 has no fused attention), at 1 and 2 threads, its
better time counts; needle runs in a child process that never imports PyTorch (see
timing.compare).
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import needle.optim  # noqa: E402,F401
from needle.apps.models import LanguageModel, ViT  # noqa: E402
from timing import compare, training_step, torch_unless_child  # noqa: E402

torch = torch_unless_child()

VOCAB, EMB, HIDDEN, LAYERS, SEQ, BATCH, HEADS, DIM_HEAD = 10000, 128, 256, 2, 64, 16, 8, 32
IMAGES = 128


# --- the PyTorch twins ---

def torch_attention(q, k, v, causal):
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        tq, tk = logits.shape[-2:]
        logits = logits + torch.ones(tq, tk).triu(tk - tq + 1) * -torch.finfo(torch.float32).max
    return logits.softmax(-1) @ v


class TorchTransformerLayer(torch.nn.Module if torch else object):
    """The course's TransformerLayer: pre-norm q, k, v, bias-free projections, ReLU MLP."""

    def __init__(self, d, heads, dim_head, hidden):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.norm_q, self.norm_k, self.norm_v = (torch.nn.LayerNorm(d) for _ in range(3))
        self.q, self.k, self.v = (torch.nn.Linear(d, inner, bias=False) for _ in range(3))
        self.out = torch.nn.Linear(inner, d, bias=False)
        self.norm = torch.nn.LayerNorm(d)
        self.fc1, self.fc2 = torch.nn.Linear(d, hidden), torch.nn.Linear(hidden, d)

    def forward(self, x):
        b, t, _ = x.shape

        def heads(norm, proj):
            return proj(norm(x)).reshape(b, t, self.heads, self.dim_head).transpose(1, 2)

        y = torch_attention(heads(self.norm_q, self.q), heads(self.norm_k, self.k),
                            heads(self.norm_v, self.v), causal=True)
        x = x + self.out(y.transpose(1, 2).reshape(b, t, -1))
        return x + self.fc2(torch.relu(self.fc1(self.norm(x))))


class TorchTransformerLM(torch.nn.Module if torch else object):
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(VOCAB, EMB)
        self.positions = torch.nn.Embedding(SEQ, EMB)
        self.layers = torch.nn.Sequential(*[TorchTransformerLayer(EMB, HEADS, DIM_HEAD, HIDDEN)
                                            for _ in range(LAYERS)])
        self.linear = torch.nn.Linear(EMB, VOCAB)

    def forward(self, x):  # x (T, B)
        h = self.embedding(x).transpose(0, 1) + self.positions.weight[: x.shape[0]]
        return self.linear(self.layers(h).transpose(0, 1).reshape(-1, EMB))


class TorchBlock(torch.nn.Module if torch else object):
    """The pre-norm GELU block of needle's GPT and ViT (non-causal here)."""

    def __init__(self, d, heads, mlp):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.qkv, self.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
        self.fc1, self.fc2 = torch.nn.Linear(d, mlp), torch.nn.Linear(mlp, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = torch_attention(q, k, v, causal=False).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x))))


class TorchViT(torch.nn.Module if torch else object):
    def __init__(self, dim=64, depth=4, heads=4, mlp=128, patch=7):
        super().__init__()
        self.patch = patch
        self.embed = torch.nn.Linear(patch * patch, dim)
        self.cls = torch.nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = torch.nn.Parameter(torch.zeros(1, (28 // patch) ** 2 + 1, dim))
        self.blocks = torch.nn.Sequential(*[TorchBlock(dim, heads, mlp) for _ in range(depth)])
        self.norm, self.head = torch.nn.LayerNorm(dim), torch.nn.Linear(dim, 10)

    def forward(self, x):
        b, p, s = x.shape[0], self.patch, 28 // self.patch
        patches = x.reshape(b, 1, s, p, s, p).permute(0, 2, 4, 1, 3, 5).reshape(b, s * s, p * p)
        tokens = torch.cat([self.cls.expand(b, 1, -1), self.embed(patches)], 1) + self.pos
        return self.head(self.norm(self.blocks(tokens))[:, 0])


# --- cases ---

def lm_step():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, VOCAB, (SEQ, BATCH)), rng.integers(0, VOCAB, SEQ * BATCH)
    return training_step(torch, lambda: LanguageModel(EMB, VOCAB, HIDDEN, LAYERS, seq_model="transformer",
                                                      seq_len=SEQ),
                         TorchTransformerLM, x, y, optimizer="sgd", lr=0.1)


def vit_step():
    rng = np.random.default_rng(1)
    x = rng.random((IMAGES, 1, 28, 28), dtype=np.float32)
    return training_step(torch, ViT, TorchViT, x, rng.integers(0, 10, IMAGES))


CASES = [
    (f"Transformer LM step ({LAYERS} layers, vocab {VOCAB:,}, {SEQ}x{BATCH} ids), SGD", lm_step),
    (f"ViT step (dim 64, depth 4, batch {IMAGES} of 28x28), Adam", vit_step),
]

if __name__ == "__main__":
    compare(__file__, CASES, torch)
