"""needle.apps.models.UNet written in PyTorch, module for module, and a weight copy from
needle into it: the oracle of tests/python/test_models_diffusion.py and the other side of
bench/bench_diffusion.py.

needle's Conv weight is (k, k, in, out) and Linear's (in, out); PyTorch's are (out, in, k, k)
and (out, in). The copy walks both models' parameters in registration order, which the two
constructors keep identical (level by level: its blocks, then its resampling).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F


def timestep_embedding(t, dim, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / max(half, 1))
    angles = t.to(torch.float64)[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros(len(t), 1, dtype=emb.dtype)], dim=1)
    return emb.float()


class ResBlock(torch.nn.Module):
    def __init__(self, cin, cout, time_dim, groups, dropout):
        super().__init__()
        self.norm1 = torch.nn.GroupNorm(groups, cin)
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, padding=1)
        self.time_proj = torch.nn.Linear(time_dim, cout)
        self.norm2 = torch.nn.GroupNorm(groups, cout)
        self.dropout = torch.nn.Dropout(dropout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = torch.nn.Conv2d(cin, cout, 1) if cin != cout else torch.nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock(torch.nn.Module):
    def __init__(self, channels, groups, heads=1):
        super().__init__()
        self.heads = heads
        self.norm = torch.nn.GroupNorm(groups, channels)
        self.qkv = torch.nn.Linear(channels, 3 * channels)
        self.proj = torch.nn.Linear(channels, channels)

    def forward(self, x):
        b, c, h, w = x.shape
        d = c // self.heads
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
        q, k, v = self.qkv(tokens).reshape(b, h * w, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        y = (p @ v).permute(0, 2, 1, 3).reshape(b, h, w, c)
        return x + self.proj(y).permute(0, 3, 1, 2)


class ResAttention(torch.nn.Module):
    def __init__(self, res, attention):
        super().__init__()
        self.res, self.attention = res, attention

    def forward(self, x, temb):
        h = self.res(x, temb)
        return h if self.attention is None else self.attention(h)


class UpsampleConv(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Level(torch.nn.Module):
    def __init__(self, blocks, resample):
        super().__init__()
        self.blocks = torch.nn.ModuleList(blocks)
        self.resample = resample


class UNet(torch.nn.Module):
    def __init__(self, in_channels=1, base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1,
                 attention_levels=(2,), num_groups=8, dropout=0.0):
        super().__init__()
        base, levels, time_dim = base_channels, len(channel_mults), 4 * base_channels
        self.base = base
        self.time_mlp = torch.nn.Sequential(torch.nn.Linear(base, time_dim), torch.nn.SiLU(),
                                            torch.nn.Linear(time_dim, time_dim))

        def res(a, b, attend):
            attention = AttentionBlock(b, num_groups) if attend else None
            return ResAttention(ResBlock(a, b, time_dim, num_groups, dropout), attention)

        self.stem = torch.nn.Conv2d(in_channels, base, 3, padding=1)
        skips, ch, down = [base], base, []
        for level, mult in enumerate(channel_mults):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(res(ch, base * mult, level in attention_levels))
                ch = base * mult
                skips.append(ch)
            resample = torch.nn.Conv2d(ch, ch, 3, stride=2, padding=1) if level < levels - 1 else None
            if resample is not None:
                skips.append(ch)
            down.append(Level(blocks, resample))
        self.down = torch.nn.ModuleList(down)
        self.mid = torch.nn.ModuleList([res(ch, ch, len(attention_levels) > 0),
                                        ResBlock(ch, ch, time_dim, num_groups, dropout)])
        up = []
        for level, mult in reversed(list(enumerate(channel_mults))):
            blocks = []
            for _ in range(num_res_blocks + 1):
                blocks.append(res(ch + skips.pop(), base * mult, level in attention_levels))
                ch = base * mult
            up.append(Level(blocks, UpsampleConv(ch) if level > 0 else None))
        self.up = torch.nn.ModuleList(up)
        self.out_norm = torch.nn.GroupNorm(num_groups, ch)
        self.out_conv = torch.nn.Conv2d(ch, in_channels, 3, padding=1)

    def forward(self, x, t):
        temb = self.time_mlp(timestep_embedding(t, self.base))
        h = self.stem(x)
        skips = [h]
        for level in self.down:
            for block in level.blocks:
                h = block(h, temb)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)
                skips.append(h)
        h = self.mid[1](self.mid[0](h, temb), temb)
        for level in self.up:
            for block in level.blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), temb)
            if level.resample is not None:
                h = level.resample(h)
        return self.out_conv(F.silu(self.out_norm(h)))


def copy_weights(needle_model, torch_model):
    """Loads needle_model's parameters into torch_model (same constructor arguments)."""
    ours = [p.numpy() for p in needle_model.parameters()]
    theirs = list(torch_model.parameters())
    if len(ours) != len(theirs):
        raise ValueError(f"parameter lists differ: {len(ours)} in needle, {len(theirs)} in torch")
    with torch.no_grad():
        for mine, p in zip(ours, theirs):
            if mine.ndim == 4:  # conv (k, k, in, out) -> (out, in, k, k)
                mine = mine.transpose(3, 2, 0, 1)
            elif mine.ndim == 2 and p.ndim == 2:  # linear (in, out) -> (out, in)
                mine = mine.T
            p.copy_(torch.from_numpy(np.ascontiguousarray(mine)).reshape(p.shape))
