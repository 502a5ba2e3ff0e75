"""Sequence modules (``needle.nn``): Embedding, RNNCell, RNN, LSTMCell, LSTM.

Sequences are (seq_len, batch, features), as in the course and PyTorch's default. Weights
are (in, out) so a step is ``x @ W``: ``W_ih`` (input_size, hidden) and ``W_hh`` (hidden,
hidden) for an RNN, four times as wide for an LSTM, whose gates are laid out i, f, g, o.
Every weight and bias is drawn from U(-1/sqrt(hidden), 1/sqrt(hidden)) in the order
W_ih, W_hh, bias_ih, bias_hh, so a model built after ``np.random.seed(s)`` matches the
course's. On a device with the fused ``lstm_cell`` kernel (the CPU's) an LSTM step's
gate nonlinearities run as one kernel forward and one backward, and nn.LSTM runs each
layer as one matmul for every step's input projection and one ``ops.lstm_sequence`` for
the recurrence; the code in the homework regions composes the same steps from matmuls and
element-wise ops (and is the test oracle of both).
"""
import math

import numpy as np

import needle.init as init
from needle import ops
from needle._needle import kernels as _kernels
from needle.autograd import Tensor

from .nn_basic import Module, Parameter, _check_ndim, _positive_int

__all__ = ["Embedding", "RNNCell", "RNN", "LSTMCell", "LSTM"]


def _check_step_input(op, X, input_size):
    _check_ndim(op, X, 2, "(batch, input_size)")
    if X.shape[1] != input_size:
        raise ValueError(f"[{op}] expects input of shape (batch, {input_size}), got {tuple(X.shape)}")


def _check_state(op, name, h, shape):
    if tuple(h.shape) != tuple(shape):
        raise ValueError(f"[{op}] {name} must have shape {tuple(shape)}, got {tuple(h.shape)}")


def _check_sequence(op, X, input_size):
    _check_ndim(op, X, 3, "(seq_len, batch, input_size)")
    if X.shape[2] != input_size:
        raise ValueError(
            f"[{op}] expects input of shape (seq_len, batch, {input_size}), got {tuple(X.shape)}")


class Embedding(Module):
    """A lookup table: ids (seq_len, batch) -> vectors (seq_len, batch, embedding_dim).

    weight (num_embeddings, embedding_dim) ~ N(0, 1). Ids may be an integer tensor or a
    float tensor holding integers (the course's ``get_batch`` makes float32 batches); an
    id outside [0, num_embeddings) is an error. The lookup is a gather, its gradient a
    scatter-add, so a repeated id accumulates its rows' gradients.
    """

    def __init__(self, num_embeddings, embedding_dim, device=None, dtype="float32"):
        super().__init__()
        _positive_int("Embedding", "num_embeddings", num_embeddings)
        _positive_int("Embedding", "embedding_dim", embedding_dim)
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        # BEGIN SOLUTION hw5
        self.weight = Parameter(init.randn(num_embeddings, embedding_dim, device=device, dtype=dtype))
        # END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        init.check_class_indices("Embedding", self.num_embeddings, x)
        # BEGIN SOLUTION hw5
        ids = x if "int" in str(x.dtype) else ops.astype(x, "int64")
        return ops.take(self.weight, ids, 0)
        # END SOLUTION


def _uniform_parameter(shape, bound, device, dtype):
    return Parameter(init.rand(*shape, low=-bound, high=bound, device=device, dtype=dtype))


class RNNCell(Module):
    """One Elman RNN step: h' = nonlinearity(X @ W_ih + bias_ih + h @ W_hh + bias_hh).

    ``forward(X, h=None)``: X (batch, input_size), h (batch, hidden_size) or None (zeros)
    -> h' (batch, hidden_size). ``nonlinearity`` is 'tanh' or 'relu'.
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 dtype="float32"):
        super().__init__()
        _positive_int("RNNCell", "input_size", input_size)
        _positive_int("RNNCell", "hidden_size", hidden_size)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"[RNNCell] nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.nonlinearity = nonlinearity
        # BEGIN SOLUTION hw5
        bound = 1.0 / math.sqrt(hidden_size)
        self.W_ih = _uniform_parameter((input_size, hidden_size), bound, device, dtype)
        self.W_hh = _uniform_parameter((hidden_size, hidden_size), bound, device, dtype)
        if bias:
            self.bias_ih = _uniform_parameter((hidden_size,), bound, device, dtype)
            self.bias_hh = _uniform_parameter((hidden_size,), bound, device, dtype)
        else:
            self.bias_ih = self.bias_hh = None
        # END SOLUTION

    def forward(self, X: Tensor, h: Tensor = None) -> Tensor:
        _check_step_input("RNNCell", X, self.input_size)
        if h is not None:
            _check_state("RNNCell", "h", h, (X.shape[0], self.hidden_size))
        # BEGIN SOLUTION hw5
        if h is None:
            h = init.zeros(X.shape[0], self.hidden_size, device=X.device, dtype=X.dtype)
        out = X @ self.W_ih + h @ self.W_hh
        if self.bias_ih is not None:
            bias = (self.bias_ih + self.bias_hh).reshape((1, self.hidden_size))
            out = out + bias.broadcast_to(out.shape)
        return ops.tanh(out) if self.nonlinearity == "tanh" else ops.relu(out)
        # END SOLUTION


class RNN(Module):
    """A stack of ``num_layers`` RNNCells (``self.rnn_cells``) run over a sequence.

    ``forward(X, h0=None)``: X (seq_len, batch, input_size), h0 (num_layers, batch,
    hidden_size) or None (zeros) -> (output (seq_len, batch, hidden_size), the last
    layer's state at every step; h_n (num_layers, batch, hidden_size), each layer's
    final state).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, nonlinearity="tanh",
                 device=None, dtype="float32"):
        super().__init__()
        _positive_int("RNN", "num_layers", num_layers)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        # BEGIN SOLUTION hw5
        self.rnn_cells = [
            RNNCell(input_size if k == 0 else hidden_size, hidden_size, bias, nonlinearity,
                    device=device, dtype=dtype)
            for k in range(num_layers)
        ]
        # END SOLUTION

    def forward(self, X: Tensor, h0: Tensor = None):
        _check_sequence("RNN", X, self.input_size)
        if h0 is not None:
            _check_state("RNN", "h0", h0, (self.num_layers, X.shape[1], self.hidden_size))
        # BEGIN SOLUTION hw5
        inputs = list(ops.split(X, 0))
        states = [None] * self.num_layers if h0 is None else list(ops.split(h0, 0))
        for k, cell in enumerate(self.rnn_cells):
            h = states[k]
            for t, x in enumerate(inputs):
                h = cell(x, h)
                inputs[t] = h
            states[k] = h
        return ops.stack(inputs, 0), ops.stack(states, 0)
        # END SOLUTION


def _fused_lstm_cell(device) -> bool:
    """Whether the device has the fused LSTM step kernels that ops.lstm_cell runs on."""
    return hasattr(ops, "lstm_cell") and _kernels.has("lstm_cell", device)


class LSTMCell(Module):
    """One LSTM step with gates i, f, g, o (in that order along the 4·hidden axis):
    i, f, o = sigmoid, g = tanh of X @ W_ih + bias_ih + h @ W_hh + bias_hh;
    c' = f·c + i·g and h' = o·tanh(c').

    ``forward(X, h=None)``: X (batch, input_size), h a tuple (h0, c0) of (batch,
    hidden_size) or None (zeros) -> (h', c').
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype="float32"):
        super().__init__()
        _positive_int("LSTMCell", "input_size", input_size)
        _positive_int("LSTMCell", "hidden_size", hidden_size)
        self.input_size = input_size
        self.hidden_size = hidden_size
        # BEGIN SOLUTION hw5
        bound = 1.0 / math.sqrt(hidden_size)
        four_h = 4 * hidden_size
        self.W_ih = _uniform_parameter((input_size, four_h), bound, device, dtype)
        self.W_hh = _uniform_parameter((hidden_size, four_h), bound, device, dtype)
        if bias:
            self.bias_ih = _uniform_parameter((four_h,), bound, device, dtype)
            self.bias_hh = _uniform_parameter((four_h,), bound, device, dtype)
        else:
            self.bias_ih = self.bias_hh = None
        # END SOLUTION

    def gates(self, X: Tensor, h0: Tensor) -> Tensor:
        """The pre-activations X @ W_ih + bias_ih + h0 @ W_hh + bias_hh, (batch, 4·hidden)."""
        # BEGIN SOLUTION hw5
        out = X @ self.W_ih + h0 @ self.W_hh
        if self.bias_ih is not None:
            bias = (self.bias_ih + self.bias_hh).reshape((1, 4 * self.hidden_size))
            out = out + bias.broadcast_to(out.shape)
        return out
        # END SOLUTION

    def forward(self, X: Tensor, h=None):
        _check_step_input("LSTMCell", X, self.input_size)
        state_shape = (X.shape[0], self.hidden_size)
        if h is None:
            h = tuple(init.zeros(*state_shape, device=X.device, dtype=X.dtype) for _ in range(2))
        h0, c0 = h
        _check_state("LSTMCell", "h0", h0, state_shape)
        _check_state("LSTMCell", "c0", c0, state_shape)
        gates = self.gates(X, h0)
        if _fused_lstm_cell(X.device):
            h_c = ops.lstm_cell(gates, c0)
            return h_c[0], h_c[1]
        # BEGIN SOLUTION hw5
        n, hidden = state_shape
        i, f, g, o = ops.split(gates.reshape((n, 4, hidden)), 1)
        i, f, g, o = ops.sigmoid(i), ops.sigmoid(f), ops.tanh(g), ops.sigmoid(o)
        c = f * c0 + i * g
        return o * ops.tanh(c), c
        # END SOLUTION


class LSTM(Module):
    """A stack of ``num_layers`` LSTMCells (``self.lstm_cells``) run over a sequence.

    ``forward(X, h=None)``: X (seq_len, batch, input_size), h a tuple (h0, c0) of
    (num_layers, batch, hidden_size) or None (zeros) -> (output (seq_len, batch,
    hidden_size), the last layer's h at every step; (h_n, c_n), each layer's final state).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, device=None,
                 dtype="float32"):
        super().__init__()
        _positive_int("LSTM", "num_layers", num_layers)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        # BEGIN SOLUTION hw5
        self.lstm_cells = [
            LSTMCell(input_size if k == 0 else hidden_size, hidden_size, bias, device=device,
                     dtype=dtype)
            for k in range(num_layers)
        ]
        # END SOLUTION

    def forward(self, X: Tensor, h=None):
        _check_sequence("LSTM", X, self.input_size)
        state_shape = (self.num_layers, X.shape[1], self.hidden_size)
        if h is not None:
            _check_state("LSTM", "h0", h[0], state_shape)
            _check_state("LSTM", "c0", h[1], state_shape)
        if _fused_lstm_cell(X.device) and X.shape[0] > 0:
            return self._forward_layers(X, h)
        # BEGIN SOLUTION hw5
        inputs = list(ops.split(X, 0))
        if h is None:
            hs, cs = [None] * self.num_layers, [None] * self.num_layers
        else:
            hs, cs = list(ops.split(h[0], 0)), list(ops.split(h[1], 0))
        for k, cell in enumerate(self.lstm_cells):
            state = None if hs[k] is None else (hs[k], cs[k])
            for t, x in enumerate(inputs):
                state = cell(x, state)
                inputs[t] = state[0]
            hs[k], cs[k] = state
        return ops.stack(inputs, 0), (ops.stack(hs, 0), ops.stack(cs, 0))
        # END SOLUTION

    def _forward_layers(self, X: Tensor, h):
        """forward's fast path, the same function: per layer, the input projections of all
        steps in one matmul, then the recurrence as one ops.lstm_sequence."""
        steps, batch, _ = X.shape
        four_h = 4 * self.hidden_size
        if h is None:
            zeros = init.zeros(batch, self.hidden_size, device=X.device, dtype=X.dtype)
            states = [(zeros, zeros)] * self.num_layers
        else:
            states = list(zip(ops.split(h[0], 0), ops.split(h[1], 0)))
        hs_n, cs_n = [], []
        for cell, (h0, c0) in zip(self.lstm_cells, states):
            xw = X.reshape((steps * batch, X.shape[2])) @ cell.W_ih
            if cell.bias_ih is not None:
                bias = (cell.bias_ih + cell.bias_hh).reshape((1, four_h))
                xw = xw + bias.broadcast_to(xw.shape)
            hs, cs = ops.lstm_sequence(xw.reshape((steps, batch, four_h)), h0, c0, cell.W_hh)
            hs_n.append(hs[steps - 1])
            cs_n.append(cs[steps - 1])
            X = hs
        return X, (ops.stack(hs_n, 0), ops.stack(cs_n, 0))
