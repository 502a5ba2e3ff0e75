"""The DDPM U-Net's building blocks (``needle.nn``): the sinusoidal timestep embedding,
ResBlock, AttentionBlock, Downsample and UpsampleConv.

Every block takes and returns NCHW tensors. ResBlock follows Ho et al. (2020): GroupNorm,
SiLU, a 3x3 conv, the timestep embedding projected to the block's channels and added to
every pixel, GroupNorm, SiLU, dropout, a 3x3 conv, plus the input (through a 1x1 conv when
the channel count changes). AttentionBlock is single-image self-attention over the pixels,
on the fused ``ops.scaled_dot_product_attention``. needle.apps.models.UNet assembles them.
"""
import math

import numpy as np

from needle import ops
from needle.autograd import Tensor

from .nn_basic import Dropout, GroupNorm, Identity, Linear, Module, SiLU, _check_ndim, _positive_int
from .nn_conv import Conv, Upsample

__all__ = ["timestep_embedding", "ResBlock", "AttentionBlock", "Downsample", "UpsampleConv"]


def timestep_embedding(t, dim, max_period=10000.0, device=None, dtype="float32"):
    """Sinusoidal embeddings (B, dim) of the integer timesteps t (B,) (a Tensor or array):
    row b is [cos(t_b * f_0), ..., cos(t_b * f_{h-1}), sin(t_b * f_0), ..., sin(t_b * f_{h-1})]
    with h = dim // 2 and frequencies f_i = max_period ** (-i / h), geometrically spaced from
    1 down to nearly 1 / max_period (a zero column is appended when dim is odd). A constant:
    timesteps carry no gradient."""
    _positive_int("timestep_embedding", "dim", dim)
    steps = t.numpy() if isinstance(t, Tensor) else np.asarray(t)
    if steps.ndim != 1:
        raise ValueError(f"[timestep_embedding] expects timesteps of shape (B,), got shape {steps.shape}")
    if device is None and isinstance(t, Tensor):
        device = t.device
    # BEGIN SOLUTION hw6
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half, dtype=np.float64) / max(half, 1))
    angles = steps.astype(np.float64)[:, None] * freqs[None, :]
    emb = np.concatenate([np.cos(angles), np.sin(angles)], axis=1)
    if dim % 2:
        emb = np.concatenate([emb, np.zeros((len(steps), 1))], axis=1)
    return Tensor(emb, device=device, dtype=dtype, requires_grad=False)
    # END SOLUTION


class ResBlock(Module):
    """A residual block conditioned on the timestep embedding: ``forward(x, temb)`` with x
    (B, in_channels, H, W) and temb (B, time_dim) -> (B, out_channels, H, W)."""

    def __init__(self, in_channels, out_channels, time_dim, num_groups=8, dropout=0.0,
                 device=None, dtype="float32"):
        super().__init__()
        for name, n in (("in_channels", in_channels), ("out_channels", out_channels), ("time_dim", time_dim)):
            _positive_int("ResBlock", name, n)
        kw = dict(device=device, dtype=dtype)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = GroupNorm(num_groups, in_channels, **kw)
        self.conv1 = Conv(in_channels, out_channels, 3, **kw)
        self.time_proj = Linear(time_dim, out_channels, **kw)
        self.norm2 = GroupNorm(num_groups, out_channels, **kw)
        self.dropout = Dropout(dropout)
        self.conv2 = Conv(out_channels, out_channels, 3, **kw)
        self.skip = Conv(in_channels, out_channels, 1, **kw) if in_channels != out_channels else Identity()
        self.act = SiLU()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        _check_ndim("ResBlock", x, 4, "(N, C, H, W)")
        if x.shape[1] != self.in_channels or len(temb.shape) != 2 or temb.shape[0] != x.shape[0]:
            raise ValueError(f"[ResBlock] expects x (B, {self.in_channels}, H, W) and temb (B, "
                             f"{self.time_proj.in_features}), got shapes {tuple(x.shape)} and {tuple(temb.shape)}")
        # BEGIN SOLUTION hw6
        h = self.conv1(self.act(self.norm1(x)))
        t = self.time_proj(self.act(temb)).reshape((x.shape[0], self.out_channels, 1, 1))
        h = h + ops.broadcast_to(t, h.shape)
        h = self.conv2(self.dropout(self.act(self.norm2(h))))
        return self.skip(x) + h
        # END SOLUTION


class AttentionBlock(Module):
    """Self-attention over the H*W pixels of each image, with a residual connection:
    x + proj(attention(q, k, v)), q, k and v one projection of GroupNorm(x), ``num_heads``
    heads of channels // num_heads. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels, num_heads=1, num_groups=8, device=None, dtype="float32"):
        super().__init__()
        _positive_int("AttentionBlock", "channels", channels)
        _positive_int("AttentionBlock", "num_heads", num_heads)
        if channels % num_heads:
            raise ValueError(f"[AttentionBlock] channels {channels} is not divisible by num_heads {num_heads}")
        kw = dict(device=device, dtype=dtype)
        self.channels, self.num_heads = channels, num_heads
        self.norm = GroupNorm(num_groups, channels, **kw)
        self.qkv = Linear(channels, 3 * channels, **kw)
        self.proj = Linear(channels, channels, **kw)

    def forward(self, x: Tensor) -> Tensor:
        _check_ndim("AttentionBlock", x, 4, "(N, C, H, W)")
        b, c, h, w = x.shape
        if c != self.channels:
            raise ValueError(f"[AttentionBlock] expects {self.channels} channels (N, C, H, W), got shape {tuple(x.shape)}")
        heads, d = self.num_heads, c // self.num_heads
        tokens = ops.permute(self.norm(x), (0, 2, 3, 1)).reshape((b, h * w, c))
        qkv = self.qkv(tokens).reshape((b, h * w, 3, heads, d))
        q, k, v = ops.split(ops.permute(qkv, (2, 0, 3, 1, 4)), 0)  # each (B, heads, HW, d)
        y = ops.scaled_dot_product_attention(q, k, v)
        y = ops.permute(y, (0, 2, 1, 3)).reshape((b * h * w, c))
        y = self.proj(y).reshape((b, h, w, c))
        return x + ops.permute(y, (0, 3, 1, 2))


class Downsample(Module):
    """Halves H and W with a stride-2 3x3 conv (28 -> 14 -> 7; odd sizes round up)."""

    def __init__(self, channels, device=None, dtype="float32"):
        super().__init__()
        self.conv = Conv(channels, channels, 3, stride=2, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class UpsampleConv(Module):
    """Doubles H and W: nearest-neighbour upsampling, then a 3x3 conv."""

    def __init__(self, channels, device=None, dtype="float32"):
        super().__init__()
        self.up = Upsample(2)
        self.conv = Conv(channels, channels, 3, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.up(x))
