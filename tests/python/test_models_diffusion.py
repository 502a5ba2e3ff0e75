"""The DDPM U-Net and its blocks (needle.nn: timestep_embedding, ResBlock, AttentionBlock,
Downsample, UpsampleConv; needle.apps.models.UNet) against the same networks in PyTorch
(bench/torch_unet.py) from the same weights, forward and backward; output shapes, the
parameter count, gradients reaching every parameter, a checkpoint round trip, and a
tiny training run that lowers the loss. Homework 6 writes the embedding, the ResBlock and
the U-Net's forward; the attention block and the resampling are framework code.
"""
import os
import sys

import numpy as np
import pytest

import needle as ndl
import needle.nn as nn
from needle.apps.models import UNet
from needle.diffusion import GaussianDiffusion

from gradcheck import DEVICES, close

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import torch_unet  # noqa: E402

hw6 = pytest.mark.hw6
SMALL = dict(base_channels=8, channel_mults=(1, 2), num_groups=4, attention_levels=(1,))


def randomize(module, seed=0, scale=0.2):
    """Random values in every parameter (the zero-initialised output conv and the norms' ones
    and zeros would hide mistakes)."""
    rng = np.random.RandomState(seed)
    for p in module.parameters():
        p.data = ndl.Tensor((rng.randn(*p.shape) * scale).astype(p.dtype), device=p.device, dtype=p.dtype)


def timesteps(values, device=None):
    return ndl.Tensor(np.asarray(values, dtype=np.int64), device=device, dtype="int64", requires_grad=False)


@hw6
@pytest.mark.parametrize("dim", [16, 7])
def test_timestep_embedding_formula(dim):
    t = np.array([0, 1, 10, 999])
    got = nn.timestep_embedding(timesteps(t), dim).numpy()
    half = dim // 2
    freqs = 10000.0 ** (-np.arange(half) / half)
    want = np.concatenate([np.cos(t[:, None] * freqs), np.sin(t[:, None] * freqs)], axis=1)
    assert got.shape == (4, dim)
    np.testing.assert_allclose(got[:, :2 * half], want, rtol=1e-5, atol=1e-6)
    if dim % 2:
        np.testing.assert_array_equal(got[:, -1], 0)


@hw6
@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
@pytest.mark.parametrize("cin,cout", [(8, 8), (8, 16)])
def test_resblock_matches_torch(device, cin, cout):
    np.random.seed(0)
    block = nn.ResBlock(cin, cout, 12, num_groups=4, device=device)
    randomize(block)
    twin = torch_unet.ResBlock(cin, cout, 12, 4, 0.0)
    torch_unet.copy_weights(block, twin)
    x = np.random.randn(2, cin, 6, 6).astype(np.float32)
    temb = np.random.randn(2, 12).astype(np.float32)
    xs, ts = ndl.Tensor(x, device=device), ndl.Tensor(temb, device=device)
    tx, tt = torch.tensor(x, requires_grad=True), torch.tensor(temb, requires_grad=True)
    y, ty = block(xs, ts), twin(tx, tt)
    close(y, ty, rtol=1e-4)
    c = np.random.randn(*y.shape).astype(np.float32)
    (y * ndl.Tensor(c, device=device)).sum().backward()
    (ty * torch.tensor(c)).sum().backward()
    close(xs.grad, tx.grad, rtol=1e-4)
    close(ts.grad, tt.grad, rtol=1e-4)
    close(block.conv1.weight.grad, twin.conv1.weight.grad.permute(2, 3, 1, 0), rtol=1e-4)
    assert isinstance(block.skip, nn.Identity) == (cin == cout)


def test_attention_block_matches_torch():
    np.random.seed(1)
    block = nn.AttentionBlock(16, num_heads=2, num_groups=4)
    randomize(block, seed=1)
    twin = torch_unet.AttentionBlock(16, 4, heads=2)
    torch_unet.copy_weights(block, twin)
    x = np.random.randn(2, 16, 5, 3).astype(np.float32)
    xs, tx = ndl.Tensor(x), torch.tensor(x, requires_grad=True)
    y, ty = block(xs), twin(tx)
    close(y, ty, rtol=1e-4)
    y.sum().backward()
    ty.sum().backward()
    close(xs.grad, tx.grad, rtol=1e-4)


def test_resampling_shapes():
    x = ndl.Tensor(np.random.randn(2, 4, 7, 7).astype(np.float32))
    assert nn.Downsample(4)(x).shape == (2, 4, 4, 4)
    assert nn.UpsampleConv(4)(x).shape == (2, 4, 14, 14)


@hw6
@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
@pytest.mark.parametrize("attention_levels", [(1,), ()], ids=["attention", "no_attention"])
def test_unet_matches_torch(device, attention_levels):
    np.random.seed(2)
    config = dict(SMALL, attention_levels=attention_levels, num_res_blocks=2)
    model = UNet(device=device, **config)
    randomize(model, seed=2, scale=0.15)
    twin = torch_unet.UNet(**config)
    torch_unet.copy_weights(model, twin)
    assert sum(int(np.prod(p.shape)) for p in model.parameters()) == sum(p.numel() for p in twin.parameters())
    has_attention = [block.attention is not None for level in model.down for block in level.blocks]
    assert has_attention == [False, False] + [bool(attention_levels)] * 2
    x = np.random.randn(3, 1, 12, 12).astype(np.float32)
    t = np.array([0, 40, 999])
    xs, tx = ndl.Tensor(x, device=device), torch.tensor(x, requires_grad=True)
    y, ty = model(xs, timesteps(t, device)), twin(tx, torch.tensor(t))
    close(y, ty, rtol=2e-4)
    (y * y).sum().backward()
    (ty * ty).sum().backward()
    close(xs.grad, tx.grad, rtol=2e-4)


def test_unet_parameter_count_and_attention_levels():
    default = UNet()
    assert sum(int(np.prod(p.shape)) for p in default.parameters()) == \
        sum(p.numel() for p in torch_unet.UNet().parameters()) == 1_112_801
    # Attention adds a GroupNorm and two Linear layers per block: 3C² + 3C + C² + C + 2C.
    without = UNet(attention_levels=())
    c = 64
    blocks = 1 + 2 + 1  # level 2's down block, its two up blocks, the middle one
    assert sum(int(np.prod(p.shape)) for p in default.parameters()) - \
        sum(int(np.prod(p.shape)) for p in without.parameters()) == blocks * (4 * c * c + 6 * c)
    with pytest.raises(ValueError, match="attention_levels"):
        UNet(attention_levels=(3,))


@hw6
@pytest.mark.parametrize("size,mults", [(28, (1, 2, 2)), (16, (1, 2, 2)), (8, (1, 2)), (32, (1, 2, 2, 2))])
def test_unet_output_shapes(size, mults):
    np.random.seed(0)
    model = UNet(in_channels=2, base_channels=8, channel_mults=mults, num_groups=4,
                 attention_levels=(len(mults) - 1,))
    y = model(ndl.Tensor(np.random.randn(2, 2, size, size).astype(np.float32)), timesteps([3, 500]))
    assert y.shape == (2, 2, size, size)
    with pytest.raises(ValueError, match="multiples"):
        model(ndl.Tensor(np.zeros((1, 2, size + 1, size), dtype=np.float32)), timesteps([0]))
    with pytest.raises(ValueError, match="t of shape"):
        model(ndl.Tensor(np.zeros((2, 2, size, size), dtype=np.float32)), timesteps([0]))


@hw6
def test_unet_every_parameter_gets_a_gradient():
    np.random.seed(0)
    model = UNet(**SMALL)
    randomize(model, seed=3, scale=0.1)
    y = model(ndl.Tensor(np.random.randn(2, 1, 8, 8).astype(np.float32)), timesteps([1, 2]))
    (y * y).sum().backward()
    for i, p in enumerate(model.parameters()):
        assert p.grad is not None, f"parameter {i} {p.shape} got no gradient"
        assert np.abs(p.grad.numpy()).max() > 0, f"parameter {i} {p.shape} got a zero gradient"


@hw6
def test_unet_output_conv_starts_at_zero():
    y = UNet(**SMALL)(ndl.Tensor(np.random.randn(2, 1, 8, 8).astype(np.float32)), timesteps([1, 2]))
    np.testing.assert_array_equal(y.numpy(), 0)


@hw6
def test_unet_checkpoint_round_trip(tmp_path):
    np.random.seed(0)
    model = UNet(**SMALL)
    randomize(model, seed=4)
    path = tmp_path / "unet.safetensors"
    ndl.save(model.state_dict(), str(path))
    other = UNet(**SMALL)
    other.load_state_dict(ndl.load(str(path)))
    x, t = ndl.Tensor(np.random.randn(2, 1, 8, 8).astype(np.float32)), timesteps([5, 6])
    np.testing.assert_array_equal(model(x, t).numpy(), other(x, t).numpy())


@hw6
def test_a_tiny_run_lowers_the_loss():
    """A few hundred steps on 256 8x8 images (a bright square at a random place on a dark
    background) bring the ε-prediction loss, measured on fixed draws, well below its start."""
    rng = np.random.RandomState(0)
    images = -np.ones((256, 1, 8, 8), dtype=np.float32)
    for img, (r, c) in zip(images, rng.randint(0, 5, size=(256, 2))):
        img[0, r:r + 4, c:c + 4] = 1.0
    np.random.seed(0)
    model = UNet(**SMALL)
    diffusion = GaussianDiffusion(model, timesteps=100)

    def held_out_loss():
        state = np.random.get_state()
        np.random.seed(99)
        with ndl.autograd.no_grad():
            value = float(diffusion.loss(ndl.Tensor(images[:128])).numpy())
        np.random.set_state(state)
        return value

    start = held_out_loss()
    opt = ndl.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(150):
        batch = images[rng.choice(256, 32, replace=False)]
        loss = diffusion.loss(ndl.Tensor(batch))
        opt.reset_grad()
        loss.backward()
        opt.step()
    end = held_out_loss()
    assert start > 0.9 and end < 0.5 * start, (start, end)
