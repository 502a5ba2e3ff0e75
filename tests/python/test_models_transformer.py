"""GPT (with its KV cache) and ViT from needle.apps.models, the token windows of
needle.data.TextDataset, and the GPT job (needle.apps.gpt_demo) end to end.

GPT: shapes, the loss at initialisation (about ln(vocab)), greedy generation identical
with and without the cache (also past block_size), top-k sampling never leaving the top
k, dropout only in training, a checkpoint round trip. ViT: shapes, the parameter count,
a short run that learns. Homework 5 (part 2) writes the models and the cache; the
dataset, the job's options and the argument errors are framework code.
"""
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import needle as ndl
import needle.nn as nn
from needle.apps.models import GPT, KVCache, ViT

from gradcheck import DEVICES

hw5 = pytest.mark.hw5
DEVICE_IDS = ["cpu", "cuda"]


def ids(array, device=None):
    return ndl.Tensor(np.asarray(array, dtype=np.int64), device=device, dtype="int64")


def small_gpt(device=None, seed=0, **kw):
    np.random.seed(seed)
    config = dict(vocab_size=37, block_size=12, n_layer=2, n_head=2, n_embd=16)
    config.update(kw)
    return GPT(**config, device=device)


# --- GPT ---

@hw5
@pytest.mark.parametrize("device", DEVICES, ids=DEVICE_IDS)
def test_gpt_shapes_and_initial_loss(device):
    model = small_gpt(device, vocab_size=211, n_embd=32)
    x = np.random.randint(0, 211, (3, 12))
    logits = model(ids(x, device))
    assert logits.shape == (3, 12, 211)
    loss = nn.SoftmaxLoss()(logits.reshape((36, 211)), ids(np.random.randint(0, 211, 36), device))
    assert abs(float(loss.numpy()) - math.log(211)) < 0.3
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    # the head is tied to the token embedding: no separate output matrix
    n = sum(int(np.prod(p.shape)) for p in model.parameters())
    per_block = 4 * 32 + 32 * 96 + 96 + 32 * 32 + 32 + 32 * 128 + 128 + 128 * 32 + 32
    assert n == 211 * 32 + 12 * 32 + 2 * per_block + 2 * 32


@hw5
@pytest.mark.parametrize("device", DEVICES, ids=DEVICE_IDS)
def test_gpt_is_causal(device):
    model = small_gpt(device)
    x = np.random.randint(0, 37, (1, 10))
    changed = x.copy()
    changed[0, 6:] = (changed[0, 6:] + 1) % 37
    a, b = model(ids(x, device)).numpy(), model(ids(changed, device)).numpy()
    np.testing.assert_allclose(a[:, :6], b[:, :6], rtol=1e-5, atol=1e-5)
    assert np.abs(a[:, 6:] - b[:, 6:]).max() > 1e-4


@hw5
@pytest.mark.parametrize("device", DEVICES, ids=DEVICE_IDS)
@pytest.mark.parametrize("new_tokens", [5, 15])  # 15: past block_size=12, the window slides
def test_gpt_greedy_generation_is_the_same_with_and_without_the_cache(device, new_tokens):
    model = small_gpt(device)
    prompt = ids(np.random.randint(0, 37, (2, 4)), device)
    cached = model.generate(prompt, new_tokens, temperature=0, use_cache=True).numpy()
    plain = model.generate(prompt, new_tokens, temperature=0, use_cache=False).numpy()
    assert cached.shape == (2, 4 + new_tokens) and cached.dtype == np.int64
    np.testing.assert_array_equal(cached[:, :4], prompt.numpy())
    np.testing.assert_array_equal(cached, plain)
    # greedy is the argmax of the full forward at each step
    for t in range(4, 4 + min(new_tokens, 8)):
        logits = model(ids(cached[:, :t], device)).numpy()[:, -1]
        np.testing.assert_array_equal(cached[:, t], logits.argmax(axis=1))


@hw5
def test_gpt_top_k_never_samples_outside_the_top_k():
    model = small_gpt()
    prompt = ids(np.random.randint(0, 37, (4, 5)))
    top3 = np.argsort(model(prompt).numpy()[:, -1], axis=1)[:, -3:]
    seen = set()
    for seed in range(40):
        np.random.seed(seed)
        nxt = model.generate(prompt, 1, temperature=2.0, top_k=3).numpy()[:, -1]
        for row, token in enumerate(nxt):
            assert token in top3[row]
            seen.add((row, int(token)))
    assert len(seen) > 4  # it samples, rather than always taking the argmax
    greedy = model.generate(prompt, 3, temperature=0).numpy()
    np.testing.assert_array_equal(model.generate(prompt, 3, top_k=1).numpy(), greedy)


@hw5
def test_gpt_dropout_only_in_training_and_generation_restores_the_mode():
    model = small_gpt(dropout=0.3)
    x = ids(np.random.randint(0, 37, (2, 8)))
    a, b = model(x).numpy(), model(x).numpy()
    assert np.abs(a - b).max() > 1e-4  # training: dropout draws differ
    model.generate(x, 2)
    assert model.training
    model.eval()  # the same up to the order of parallel sums
    np.testing.assert_allclose(model(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


@hw5
def test_gpt_checkpoint_round_trip(tmp_path):
    model = small_gpt()
    path = str(tmp_path / "gpt.safetensors")
    ndl.save(model.state_dict(), path)
    other = small_gpt(seed=1)
    other.load_state_dict(ndl.load(path))
    x = ids(np.random.randint(0, 37, (2, 6)))
    np.testing.assert_allclose(model(x).numpy(), other(x).numpy(), rtol=1e-5, atol=1e-6)


@hw5
def test_kv_cache_writes_in_place_at_the_current_length():
    cache = KVCache(1, 2, 5, 3)
    keys = cache.keys
    k1, v1 = (np.random.randn(1, 2, 2, 3).astype(np.float32) for _ in range(2))
    k, v = cache.append(ndl.Tensor(k1), ndl.Tensor(v1))
    assert k.shape == (1, 2, 2, 3) and cache.length == 2
    k2, v2 = (np.random.randn(1, 2, 1, 3).astype(np.float32) for _ in range(2))
    k, v = cache.append(ndl.Tensor(k2), ndl.Tensor(v2))
    assert cache.keys is keys  # allocated once
    np.testing.assert_array_equal(k.numpy(), np.concatenate([k1, k2], axis=2))
    np.testing.assert_array_equal(v.numpy(), np.concatenate([v1, v2], axis=2))
    with pytest.raises(ValueError, match=r"\[KVCache\] 6 steps do not fit a cache of 5"):
        cache.append(ndl.Tensor(np.zeros((1, 2, 3, 3), np.float32)), ndl.Tensor(np.zeros((1, 2, 3, 3), np.float32)))


def test_gpt_argument_errors():
    model = small_gpt()
    with pytest.raises(ValueError, match=r"\[GPT\] expects token ids of shape \(batch, time\)"):
        model(ids([1, 2, 3]))
    with pytest.raises(ValueError, match=r"\[GPT\] 13 positions exceed block_size=12"):
        model(ids(np.zeros((1, 13))))
    with pytest.raises(ValueError, match=r"\[GPT.generate\] needs temperature >= 0"):
        model.generate(ids([[1]]), 2, temperature=-1)


# --- ViT ---

@hw5
@pytest.mark.parametrize("device", DEVICES, ids=DEVICE_IDS)
def test_vit_shapes_and_parameter_count(device):
    np.random.seed(0)
    model = ViT(device=device)
    logits = model(ndl.Tensor(np.random.rand(3, 1, 28, 28).astype(np.float32), device=device))
    assert logits.shape == (3, 10)
    dim, mlp, patches = 64, 128, 16
    per_block = 4 * dim + dim * 3 * dim + 3 * dim + dim * dim + dim + dim * mlp + mlp + mlp * dim + dim
    want = 49 * dim + dim + dim + (patches + 1) * dim + 4 * per_block + 2 * dim + dim * 10 + 10
    assert sum(int(np.prod(p.shape)) for p in model.parameters()) == want


@hw5
def test_vit_patches_are_the_image_tiles():
    """Each token of the patch embedding sees exactly its own 7x7 tile."""
    np.random.seed(1)
    model = ViT(image_size=14, patch_size=7, depth=1)
    images = np.random.rand(1, 1, 14, 14).astype(np.float32)
    changed = images.copy()
    changed[0, 0, 7:, :7] += 1.0  # tile 2 (row 1, column 0)
    x = ndl.Tensor(images)
    patches_a = model.patch_embed(
        ndl.ops.permute(x.reshape((1, 1, 2, 7, 2, 7)), (0, 2, 4, 1, 3, 5)).reshape((1, 4, 49))).numpy()
    tiles = images[0, 0].reshape(2, 7, 2, 7).transpose(0, 2, 1, 3).reshape(4, 49)
    np.testing.assert_allclose(patches_a[0], tiles @ model.patch_embed.weight.numpy()
                               + model.patch_embed.bias.numpy(), rtol=1e-5, atol=1e-6)
    assert np.abs(model(ndl.Tensor(changed)).numpy() - model(x).numpy()).max() > 0


@hw5
def test_vit_learns_a_simple_image_task():
    """Bright top half vs bright bottom half: a few Adam steps separate the two."""
    np.random.seed(2)
    n = 64
    labels = np.random.randint(0, 2, n)
    images = np.random.rand(n, 1, 14, 14).astype(np.float32) * 0.5
    for i, y in enumerate(labels):
        images[i, 0, :7] += 0.5 * (y == 0)
        images[i, 0, 7:] += 0.5 * (y == 1)
    model = ViT(image_size=14, patch_size=7, num_classes=2, dim=32, depth=2, num_heads=2, mlp_dim=64)
    opt = ndl.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.SoftmaxLoss()
    x, y = ndl.Tensor(images), ids(labels)
    for _ in range(30):
        loss = loss_fn(model(x), y)
        opt.reset_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert (model(x).numpy().argmax(axis=1) == labels).mean() >= 0.95


def test_vit_argument_errors():
    with pytest.raises(ValueError, match=r"\[ViT\] image_size 28 is not a multiple of patch_size 5"):
        ViT(patch_size=5)
    with pytest.raises(ValueError, match=r"\[ViT\] expects images of shape \(batch, 1, 28, 28\), got \(2, 28, 28\)"):
        ViT()(ndl.Tensor(np.zeros((2, 28, 28), np.float32)))


# --- TextDataset ---

def test_text_dataset_windows_and_batches():
    data = ndl.data.TextDataset(np.arange(23), 5)
    assert len(data) == 4  # windows at 0, 5, 10, 15; each needs one more id as its last target
    x, y = data[1]
    np.testing.assert_array_equal(x, np.arange(5, 10))
    np.testing.assert_array_equal(y, np.arange(6, 11))
    xb, yb = data[np.array([3, 0])]
    assert xb.shape == (2, 5) and xb.dtype == np.int64 and xb[0, 0] == 15 and yb[1, -1] == 5
    strided = ndl.data.TextDataset(np.arange(10), 4, stride=1)
    assert len(strided) == 6 and strided[5][1][-1] == 9
    batches = list(ndl.data.DataLoader(data, 2, shuffle=True))
    assert [b[0].shape for b in batches] == [(2, 5), (2, 5)] and batches[0][0].dtype == "int64"
    with pytest.raises(ValueError, match=r"\[TextDataset\] 4 ids are too few"):
        ndl.data.TextDataset(np.arange(4), 4)
    with pytest.raises(ValueError, match=r"\[TextDataset\] expects a 1-D integer sequence"):
        ndl.data.TextDataset(np.zeros(10), 4)
    with pytest.raises(IndexError):
        data[4]


# --- the GPT job ---

def _gpt_demo(*args):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(ndl.__path__[0]))
    return subprocess.run([sys.executable, "-m", "needle.apps.gpt_demo", *args], capture_output=True,
                          text=True, env=env, timeout=600)


@hw5
@pytest.mark.skipif(not os.path.exists("/usr/bin/bible"), reason="Debian's bible-kjv is not installed")
def test_gpt_demo_tiny_run_and_sample_only(tmp_path):
    out = str(tmp_path / "out")
    r = _gpt_demo("--steps", "3", "--eval-every", "2", "--layers", "1", "--heads", "2", "--embd", "16",
                  "--block-size", "16", "--vocab-size", "300", "--sample-tokens", "5", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    match = re.fullmatch(r"validation loss: (\d+\.\d+) nats/token, (\d+\.\d+) bits/byte", lines[-1])
    assert match, lines[-1]
    nats, bits = map(float, match.groups())
    assert nats < math.log(300) + 0.5 and 0 < bits < 8
    assert any(line.startswith("step 2: validation loss") for line in lines)
    assert next(line for line in lines if line.startswith("sample: ")).startswith("sample: In the beginning")
    r = _gpt_demo("--sample-only", "--prompt", "And Moses", "--sample-tokens", "4", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("sample: And Moses")


@pytest.mark.parametrize("args,message", [
    (["--steps", "0"], "--steps must be positive"),
    (["--embd", "30", "--heads", "4"], "--embd 30 must be a multiple of --heads 4"),
    (["--vocab-size", "100"], "--vocab-size must be at least 257"),
    (["--sample-only", "--out", "{tmp}"], "--sample-only needs a trained checkpoint; missing"),
])
def test_gpt_demo_rejects_bad_options(args, message, tmp_path):
    r = _gpt_demo(*(a.format(tmp=tmp_path) for a in args))
    assert r.returncode == 2 and message in r.stderr, r.stderr
