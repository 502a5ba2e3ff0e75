"""Models built from ``needle.nn`` (the course's ``apps/models.py``): ResNet9 for CIFAR-10,
FashionResNet, its adaptation to 28x28 grayscale images (the main demo's CNN),
LanguageModel, an embedding, a recurrent (or transformer) stack and a linear decoder over a
vocabulary, GPT (with its KVCache), ViT, and UNet, the DDPM noise predictor of
needle.diffusion.

The CNNs are stacks of ConvBN blocks (Conv, BatchNorm2d, ReLU) with residual pairs, NCHW in;
the U-Net's blocks live in needle.nn (nn_diffusion.py).
"""
import math

import numpy as np

import needle as ndl
import needle.init as init
from needle import backend_ndarray as nd
from needle import nn, ops
from needle.autograd import Tensor


class ConvBN(nn.Module):
    """Conv(in, out, kernel, stride) with "same" padding, then BatchNorm2d, then ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, device=None, dtype="float32"):
        super().__init__()
        # BEGIN SOLUTION hw4
        self.conv = nn.Conv(in_channels, out_channels, kernel_size, stride=stride, device=device, dtype=dtype)
        self.bn = nn.BatchNorm2d(out_channels, device=device, dtype=dtype)
        self.relu = nn.ReLU()
        # END SOLUTION

    def forward(self, x):
        # BEGIN SOLUTION hw4
        return self.relu(self.bn(self.conv(x)))
        # END SOLUTION


class ResNet9(nn.Module):
    """The course's CIFAR-10 network, (N, 3, 32, 32) -> (N, 10) logits, 431,946 parameters:
    ConvBN(3, 16, 7, 4), ConvBN(16, 32, 3, 2), a residual pair of ConvBN(32, 32, 3, 1),
    ConvBN(32, 64, 3, 2), ConvBN(64, 128, 3, 2), a residual pair of ConvBN(128, 128, 3, 1),
    Flatten, Linear(128, 128), ReLU, Linear(128, 10). Built in that order, so that after
    ``np.random.seed`` the weights are drawn exactly as the course's reference draws them."""

    def __init__(self, device=None, dtype="float32"):
        super().__init__()
        # BEGIN SOLUTION hw4
        def block(a, b, k, s):
            return ConvBN(a, b, k, s, device=device, dtype=dtype)

        self.model = nn.Sequential(
            block(3, 16, 7, 4),
            block(16, 32, 3, 2),
            nn.Residual(nn.Sequential(block(32, 32, 3, 1), block(32, 32, 3, 1))),
            block(32, 64, 3, 2),
            block(64, 128, 3, 2),
            nn.Residual(nn.Sequential(block(128, 128, 3, 1), block(128, 128, 3, 1))),
            nn.Flatten(),
            nn.Linear(128, 128, device=device, dtype=dtype),
            nn.ReLU(),
            nn.Linear(128, 10, device=device, dtype=dtype),
        )
        # END SOLUTION

    def forward(self, x):
        # BEGIN SOLUTION hw4
        return self.model(x)
        # END SOLUTION


class FashionResNet(nn.Module):
    """ResNet9's design for (N, 1, 28, 28) images: a ConvBN stem at full resolution, then
    per stage a stride-2 ConvBN and a residual pair of ConvBNs (28 -> 14 -> 7), global
    average pooling and one Linear layer. ``width`` is the stem's channel count, doubled
    per stage."""

    def __init__(self, width=32, num_classes=10, in_channels=1, device=None, dtype="float32"):
        super().__init__()
        w = width

        def block(a, b, s=1):
            return ConvBN(a, b, 3, s, device=device, dtype=dtype)

        def residual(c):
            return nn.Residual(nn.Sequential(block(c, c), block(c, c)))

        self.features = nn.Sequential(
            block(in_channels, w),
            block(w, w, 2), residual(w),
            block(w, 2 * w, 2), residual(2 * w),
            nn.AvgPool2d(7),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * w, num_classes, device=device, dtype=dtype)

    def forward(self, x):
        return self.head(self.features(x))


class LanguageModel(nn.Module):
    """Next-token logits for (seq_len, batch) token ids: Embedding(output_size,
    embedding_size), then ``seq_model`` -- an RNN or LSTM of ``num_layers`` layers of
    ``hidden_size``, or a causal Transformer of ``num_layers`` layers (MLP width
    ``hidden_size``, positions up to ``seq_len``) -- then a Linear decoder to output_size.

    ``forward(x, h=None)`` -> (logits (seq_len·batch, output_size), h): h is the recurrent
    state to pass to the next call (h_n for an RNN, (h_n, c_n) for an LSTM; zeros for the
    transformer, which keeps no state between calls).
    """

    def __init__(self, embedding_size, output_size, hidden_size, num_layers=1, seq_model="rnn",
                 seq_len=40, device=None, dtype="float32"):
        super().__init__()
        if seq_model not in ("rnn", "lstm", "transformer"):
            raise ValueError("[LanguageModel] seq_model must be 'rnn', 'lstm' or 'transformer', "
                             f"got {seq_model!r}")
        self.embedding_size = embedding_size
        self.output_size = output_size
        self.hidden_size = hidden_size
        self.seq_len = seq_len
        # BEGIN SOLUTION hw5
        self.embedding = nn.Embedding(output_size, embedding_size, device=device, dtype=dtype)
        if seq_model == "transformer":
            self.seq_model = nn.Transformer(embedding_size, hidden_size, num_layers, device=device,
                                            dtype=dtype, sequence_len=seq_len)
            out_features = embedding_size
        else:
            seq_class = nn.RNN if seq_model == "rnn" else nn.LSTM
            self.seq_model = seq_class(embedding_size, hidden_size, num_layers, device=device, dtype=dtype)
            out_features = hidden_size
        self.linear = nn.Linear(out_features, output_size, device=device, dtype=dtype)
        # END SOLUTION

    def forward(self, x, h=None):
        if len(x.shape) != 2:
            raise ValueError(f"[LanguageModel] expects token ids of shape (seq_len, batch), got {tuple(x.shape)}")
        # BEGIN SOLUTION hw5
        seq_len, bs = x.shape
        out, h = self.seq_model(self.embedding(x), h)
        return self.linear(out.reshape((seq_len * bs, out.shape[-1]))), h
        # END SOLUTION


# --- Transformers on the fused attention op: GPT and ViT ---

def _normal_linear(in_features, out_features, std, device, dtype, bias=True):
    """nn.Linear with N(0, std) weights and zero bias (GPT-2's initialisation)."""
    layer = nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype)
    layer.weight = nn.Parameter(init.randn(in_features, out_features, std=std, device=device, dtype=dtype))
    if bias:
        layer.bias = nn.Parameter(init.zeros(1, out_features, device=device, dtype=dtype))
    return layer


class KVCache:
    """One attention layer's keys and values for generation: two (B, H, max_len, D) arrays
    allocated once; ``append`` writes the new steps at the current length (no copy of what
    is cached) and returns the filled prefix as constant tensors."""

    def __init__(self, batch, heads, max_len, dim_head, device=None, dtype="float32"):
        shape = (batch, heads, max_len, dim_head)
        self.keys = nd.full(shape, 0.0, dtype, device)
        self.values = nd.full(shape, 0.0, dtype, device)
        self.max_len = max_len
        self.length = 0

    def append(self, k, v):
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"[KVCache] {end} steps do not fit a cache of {self.max_len}")
        # BEGIN SOLUTION hw5
        self.keys[:, :, self.length:end, :] = k.realize_cached_data()
        self.values[:, :, self.length:end, :] = v.realize_cached_data()
        self.length = end
        return (Tensor.make_const(self.keys[:, :, :end, :]),
                Tensor.make_const(self.values[:, :, :end, :]))
        # END SOLUTION


class SelfAttention(nn.Module):
    """Multi-head self-attention on (B, T, dim) with one fused qkv projection and
    ``ops.scaled_dot_product_attention``; ``forward(x, cache=None)`` attends over the
    cached keys and values too when given a KVCache (causal stays bottom-right aligned,
    so each new query sees every earlier position)."""

    def __init__(self, dim, num_heads, dropout=0.0, causal=True, std=0.02, proj_std=0.02,
                 device=None, dtype="float32"):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"[SelfAttention] dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.dim_head = num_heads, dim // num_heads
        self.causal = causal
        self.qkv = _normal_linear(dim, 3 * dim, std, device, dtype)
        self.proj = _normal_linear(dim, dim, proj_std, device, dtype)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, cache=None):
        batch, steps, dim = x.shape
        # BEGIN SOLUTION hw5
        qkv = self.qkv(x).reshape((batch, steps, 3, self.num_heads, self.dim_head))
        q, k, v = ops.split(ops.permute(qkv, (2, 0, 3, 1, 4)), 0)  # each (B, H, T, D)
        if cache is not None:
            k, v = cache.append(k, v)
        y = ops.scaled_dot_product_attention(q, k, v, causal=self.causal,
                                             dropout=self.dropout.p if self.training else 0.0)
        y = ops.permute(y, (0, 2, 1, 3)).reshape((batch, steps, dim))
        return self.dropout(self.proj(y))
        # END SOLUTION


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(LayerNorm(x)), then x + MLP(LayerNorm(x)) with a GELU MLP."""

    def __init__(self, dim, num_heads, mlp_dim, dropout=0.0, causal=True, proj_std=0.02,
                 device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.ln1 = nn.LayerNorm(dim, **kw)
        self.attn = SelfAttention(dim, num_heads, dropout, causal, proj_std=proj_std, **kw)
        self.ln2 = nn.LayerNorm(dim, **kw)
        self.fc1 = _normal_linear(dim, mlp_dim, 0.02, **kw)
        self.act = nn.GELU()
        self.fc2 = _normal_linear(mlp_dim, dim, proj_std, **kw)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, cache=None):
        # BEGIN SOLUTION hw5
        x = x + self.attn(self.ln1(x), cache)
        return x + self.dropout(self.fc2(self.act(self.fc1(self.ln2(x)))))
        # END SOLUTION


class GPT(nn.Module):
    """A decoder-only transformer (GPT-2's layout): token and learned position embeddings,
    ``n_layer`` pre-norm causal blocks, a final LayerNorm and an output head tied to the
    token embedding. ``forward(idx)`` with idx (B, T) int64 -> logits (B, T, vocab_size).
    Weights are N(0, 0.02), the residual projections N(0, 0.02 / sqrt(2 n_layer)), so the
    loss at initialisation is about ln(vocab_size)."""

    def __init__(self, vocab_size, block_size, n_layer=4, n_head=4, n_embd=128, dropout=0.0,
                 device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.vocab_size, self.block_size = vocab_size, block_size
        self.n_layer, self.n_head, self.n_embd = n_layer, n_head, n_embd
        self.device, self.dtype = device, dtype
        self.wte = nn.Embedding(vocab_size, n_embd, **kw)
        self.wte.weight = nn.Parameter(init.randn(vocab_size, n_embd, std=0.02, **kw))
        self.wpe = nn.Embedding(block_size, n_embd, **kw)
        self.wpe.weight = nn.Parameter(init.randn(block_size, n_embd, std=0.02, **kw))
        self.drop = nn.Dropout(dropout)
        proj_std = 0.02 / math.sqrt(2 * n_layer)
        self.blocks = [TransformerBlock(n_embd, n_head, 4 * n_embd, dropout, True, proj_std, **kw)
                       for _ in range(n_layer)]
        self.ln_f = nn.LayerNorm(n_embd, **kw)

    def forward(self, idx, caches=None):
        if len(idx.shape) != 2:
            raise ValueError(f"[GPT] expects token ids of shape (batch, time), got {tuple(idx.shape)}")
        batch, steps = idx.shape
        start = caches[0].length if caches else 0
        if start + steps > self.block_size:
            raise ValueError(f"[GPT] {start + steps} positions exceed block_size={self.block_size}")
        # BEGIN SOLUTION hw5
        positions = Tensor(np.arange(start, start + steps, dtype=np.int64), device=idx.device)
        x = self.drop(self.wte(idx) + ops.broadcast_to(self.wpe(positions), (batch, steps, self.n_embd)))
        for i, block in enumerate(self.blocks):
            x = block(x, caches[i] if caches else None)
        return ops.matmul(self.ln_f(x), ops.transpose(self.wte.weight))
        # END SOLUTION

    def _sample(self, logits, temperature, top_k):
        """Next ids (B,) from the last position's logits (B, vocab) as float64 numpy."""
        if temperature == 0:
            return logits.argmax(axis=1)
        logits = logits / temperature
        if top_k is not None:
            kth = np.sort(logits, axis=1)[:, -min(top_k, logits.shape[1])][:, None]
            logits = np.where(logits < kth, -np.inf, logits)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
        draws = np.random.rand(logits.shape[0], 1)
        return np.minimum((cdf < draws).sum(axis=1), logits.shape[1] - 1)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True):
        """Appends ``max_new_tokens`` sampled ids to idx (B, T) -> int64 Tensor (B, T + new).

        ``temperature=0`` is greedy; ``top_k`` keeps the k most likely ids. With the cache
        each new token runs through the network alone, attending over per-layer KVCaches;
        once the context fills ``block_size`` (or without the cache) every step reruns the
        last ``block_size`` tokens. Draws come from numpy's RNG."""
        tokens = np.asarray(idx.numpy() if hasattr(idx, "numpy") else idx).astype(np.int64)
        if tokens.ndim != 2 or tokens.shape[1] == 0:
            raise ValueError(f"[GPT.generate] expects ids of shape (batch, time >= 1), got {tokens.shape}")
        if temperature < 0 or (top_k is not None and top_k < 1):
            raise ValueError(f"[GPT.generate] needs temperature >= 0 and top_k >= 1, got "
                             f"{temperature} and {top_k}")
        was_training = self.training
        self.eval()
        caches, fed = None, 0  # fed: how many of `tokens` the caches hold
        try:
            with ndl.autograd.no_grad():
                for _ in range(max_new_tokens):
                    if use_cache and tokens.shape[1] <= self.block_size:
                        if caches is None:
                            caches = [KVCache(tokens.shape[0], self.n_head, self.block_size,
                                              self.n_embd // self.n_head, self.device, self.dtype)
                                      for _ in self.blocks]
                        step = tokens[:, fed:]
                        logits = self(Tensor(step, device=self.device), caches)
                        fed = tokens.shape[1]
                    else:
                        logits = self(Tensor(tokens[:, -self.block_size:], device=self.device))
                    last = logits.numpy()[:, -1, :].astype(np.float64)
                    nxt = self._sample(last, temperature, top_k)
                    tokens = np.concatenate([tokens, nxt[:, None].astype(np.int64)], axis=1)
        finally:
            self.train(was_training)
        return Tensor(tokens, device=self.device, dtype="int64")


class ViT(nn.Module):
    """A vision transformer: non-overlapping patch_size² patches, linearly embedded, a class
    token and learned positions, ``depth`` pre-norm (non-causal) blocks, then LayerNorm
    and a linear head on the class token. ``forward(x)`` (B, C, H, W) -> (B, num_classes)."""

    def __init__(self, image_size=28, patch_size=7, in_channels=1, num_classes=10, dim=64, depth=4,
                 num_heads=4, mlp_dim=128, dropout=0.0, device=None, dtype="float32"):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"[ViT] image_size {image_size} is not a multiple of patch_size {patch_size}")
        kw = dict(device=device, dtype=dtype)
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        self.num_patches = (image_size // patch_size) ** 2
        self.dim = dim
        self.patch_embed = _normal_linear(in_channels * patch_size * patch_size, dim, 0.02, **kw)
        self.cls_token = nn.Parameter(init.randn(1, 1, dim, std=0.02, **kw))
        self.pos_embedding = nn.Parameter(init.randn(1, self.num_patches + 1, dim, std=0.02, **kw))
        self.drop = nn.Dropout(dropout)
        self.blocks = [TransformerBlock(dim, num_heads, mlp_dim, dropout, False, **kw)
                       for _ in range(depth)]
        self.norm = nn.LayerNorm(dim, **kw)
        self.head = _normal_linear(dim, num_classes, 0.02, **kw)

    def forward(self, x):
        want = (self.in_channels, self.image_size, self.image_size)
        if len(x.shape) != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"[ViT] expects images of shape (batch, {', '.join(map(str, want))}), "
                             f"got {tuple(x.shape)}")
        batch, p, side = x.shape[0], self.patch_size, self.image_size // self.patch_size
        # BEGIN SOLUTION hw5
        patches = x.reshape((batch, self.in_channels, side, p, side, p))
        patches = ops.permute(patches, (0, 2, 4, 1, 3, 5)).reshape(
            (batch, self.num_patches, self.in_channels * p * p))
        cls = ops.broadcast_to(self.cls_token, (batch, 1, self.dim))
        tokens = ops.concat([cls, self.patch_embed(patches)], 1)
        tokens = self.drop(tokens + ops.broadcast_to(self.pos_embedding, tokens.shape))
        for block in self.blocks:
            tokens = block(tokens)
        first = ops.getitem(self.norm(tokens), (slice(None), 0))
        return self.head(first)
        # END SOLUTION


class _ResAttention(nn.Module):
    """A ResBlock, then self-attention when its level has it: ``forward(x, temb)``."""

    def __init__(self, res, attention=None):
        super().__init__()
        self.res = res
        self.attention = attention

    def forward(self, x, temb):
        h = self.res(x, temb)
        return h if self.attention is None else self.attention(h)


class _UNetLevel(nn.Module):
    """One resolution of the U-Net: its ResBlocks (each followed by self-attention when the
    level has it) and the resampling after them (None at the end of the path)."""

    def __init__(self, blocks, resample):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.resample = resample


class UNet(nn.Module):
    """The DDPM U-Net (Ho et al., 2020) predicting the noise in x_t: ``forward(x, t)`` with
    x (B, in_channels, H, W) and t (B,) integer timesteps -> (B, in_channels, H, W).

    A 3x3 stem conv to base_channels; down the levels, ``num_res_blocks`` ResBlocks at
    base_channels * channel_mults[i] (self-attention after each at the levels listed in
    attention_levels) and a stride-2 conv between levels; a middle ResBlock, attention
    (when any level has it), ResBlock; up the levels, ``num_res_blocks + 1`` ResBlocks each taking the
    concatenation with the matching skip (every down block's output, the stem's too),
    nearest upsampling + conv between levels; GroupNorm, SiLU and a 3x3 conv (zero-initial,
    so the untrained model predicts 0) back to in_channels. The timestep enters every
    ResBlock through a sinusoidal embedding of base_channels and a two-layer SiLU MLP of
    4 * base_channels. With the defaults, 28x28 runs at 28 -> 14 -> 7 and back."""

    def __init__(self, in_channels=1, base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1,
                 attention_levels=(2,), num_groups=8, dropout=0.0, device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        levels = len(channel_mults)
        if levels == 0 or any(not 0 <= a < levels for a in attention_levels):
            raise ValueError(f"[UNet] attention_levels {tuple(attention_levels)} must index "
                             f"channel_mults {tuple(channel_mults)}")
        self.in_channels, self.base_channels = in_channels, base_channels
        self.downsamplings = levels - 1
        time_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, time_dim, **kw), nn.SiLU(),
                                      nn.Linear(time_dim, time_dim, **kw))

        def res(a, b, attend):
            attention = nn.AttentionBlock(b, num_groups=num_groups, **kw) if attend else None
            return _ResAttention(nn.ResBlock(a, b, time_dim, num_groups, dropout, **kw), attention)

        self.stem = nn.Conv(in_channels, base_channels, 3, **kw)
        skips, ch, down = [base_channels], base_channels, []
        for level, mult in enumerate(channel_mults):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(res(ch, base_channels * mult, level in attention_levels))
                ch = base_channels * mult
                skips.append(ch)
            resample = nn.Downsample(ch, **kw) if level < levels - 1 else None
            if resample is not None:
                skips.append(ch)
            down.append(_UNetLevel(blocks, resample))
        self.down = nn.ModuleList(down)
        self.mid = nn.ModuleList([res(ch, ch, len(attention_levels) > 0),
                                  nn.ResBlock(ch, ch, time_dim, num_groups, dropout, **kw)])
        up = []
        for level, mult in reversed(list(enumerate(channel_mults))):
            blocks = []
            for _ in range(num_res_blocks + 1):
                blocks.append(res(ch + skips.pop(), base_channels * mult, level in attention_levels))
                ch = base_channels * mult
            up.append(_UNetLevel(blocks, nn.UpsampleConv(ch, **kw) if level > 0 else None))
        self.up = nn.ModuleList(up)
        self.out_norm = nn.GroupNorm(num_groups, ch, **kw)
        self.out_conv = nn.Conv(ch, in_channels, 3, **kw)
        self.out_conv.weight.data = self.out_conv.weight.data * 0.0
        self.out_conv.bias.data = self.out_conv.bias.data * 0.0

    def forward(self, x, t):
        multiple = 2 ** self.downsamplings
        if len(x.shape) != 4 or x.shape[1] != self.in_channels or x.shape[2] % multiple or x.shape[3] % multiple:
            raise ValueError(f"[UNet] expects x of shape (B, {self.in_channels}, H, W) with H and W multiples "
                             f"of {multiple}, got {tuple(x.shape)}")
        if len(t.shape) != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"[UNet] expects t of shape ({x.shape[0]},), got {tuple(t.shape)}")
        # BEGIN SOLUTION hw6
        temb = self.time_mlp(nn.timestep_embedding(t, self.base_channels, device=x.device, dtype=x.dtype))

        h = self.stem(x)
        skips = [h]
        for level in self.down:
            for blocks in level.blocks:
                h = blocks(h, temb)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)
                skips.append(h)
        h = self.mid[1](self.mid[0](h, temb), temb)
        for level in self.up:
            for blocks in level.blocks:
                h = blocks(ops.concat([h, skips.pop()], 1), temb)
            if level.resample is not None:
                h = level.resample(h)
        return self.out_conv(ops.silu(self.out_norm(h)))
        # END SOLUTION
