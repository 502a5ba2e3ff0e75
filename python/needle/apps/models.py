"""Models built from ``needle.nn`` (the course's ``apps/models.py``): ResNet9 for CIFAR-10,
FashionResNet, its adaptation to 28x28 grayscale images (the main demo's CNN), and
LanguageModel, an embedding, a recurrent stack and a linear decoder over a vocabulary.

The CNNs are stacks of ConvBN blocks (Conv, BatchNorm2d, ReLU) with residual pairs, NCHW in.
"""
import needle as ndl
from needle import nn


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
