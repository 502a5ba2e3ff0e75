"""needle.ops: THE table of op cases. Every op's cases are declared once, in CASES below,
and each runs on every device: forward against numpy (float32 and float64), gradient by
finite differences (float64; contiguous, non-contiguous and broadcast inputs), and, for ops
with a fused kernel, the fused kernel against the op's composite. (The C++ tests keep only
what C++ alone can check: the C++ API, errors, kernels; test_ops_nn.py adds PyTorch as a
second oracle for conv and pooling.) Also here: the op classes' compute / gradient /
__call__; stack, split and logsumexp against torch; and the course's forward cases."""
import contextlib
import math

import numpy as np
import pytest

import needle as ndl
from needle import _needle

from gradcheck import DEVICES, check_gradients, gradient_check, tensor

# Each case is graded with the homework whose code it needs (HOMEWORK.md): logsumexp,
# logsoftmax, where and integer indexing are hw2; flip, dilate, pad, stack, split, conv and
# pooling are hw4; the rest is hw1. The forward of an op no homework writes (FRAMEWORK_FORWARD)
# carries no mark, while its gradient still grades hw1's backward pass. A case with fused
# kernels runs with them off: it grades the composite a student writes, and
# test_fused_matches_composite compares the two.


def np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_gelu(x):
    from math import erf, sqrt
    return x * 0.5 * (1 + np.vectorize(erf)(x / sqrt(2)))


def np_setitem(a, key, v):
    out = a.copy()
    out[key] = v
    return out


def np_windows(x, kh, kw, stride):
    """(N, Ho, Wo, kh, kw, C): every kh x kw window of an NHWC array at the stride."""
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    return win[:, ::stride, ::stride].transpose(0, 1, 2, 4, 5, 3)


def np_pad_hw(x, padding, value=0.0):
    return np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=value)


def np_conv(x, w, stride, padding):
    return np.einsum("nhwijc,ijcd->nhwd", np_windows(np_pad_hw(x, padding), *w.shape[:2], stride), w)


def np_conv_weight_grad(x, g, kh, kw, stride, padding):
    return np.einsum("nhwijc,nhwd->ijcd", np_windows(np_pad_hw(x, padding), kh, kw, stride), g)


def np_conv_input_grad(g, w, h, wd, stride, padding):
    """The adjoint of np_conv in x: each output pixel's gradient spread over its window."""
    kh, kw, cin, _ = w.shape
    out = np.zeros((g.shape[0], h + 2 * padding, wd + 2 * padding, cin), dtype=g.dtype)
    ho, wo = g.shape[1], g.shape[2]
    for i in range(kh):
        for j in range(kw):
            out[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride] += \
                np.einsum("nhwd,cd->nhwc", g, w[i, j])
    return out[:, padding:padding + h, padding:padding + wd]


def np_pool(x, k, stride, padding, reduce, pad_value):
    return reduce(np_windows(np_pad_hw(x, padding, pad_value), k, k, stride or k), axis=(3, 4))


def np_dilate(a, axes, d):
    shape = list(a.shape)
    for ax in axes:
        shape[ax] *= d + 1
    out = np.zeros(shape, dtype=a.dtype)
    out[tuple(slice(None, None, d + 1) if i in axes else slice(None) for i in range(a.ndim))] = a
    return out


def np_undilate(a, axes, d):
    return a[tuple(slice(None, None, d + 1) if i in axes else slice(None) for i in range(a.ndim))]


IDX = np.array([2, 0, 2, -1, 1])  # with repeats and a negative index


def _IDX(like):
    return ndl.Tensor(IDX, device=like.device)


POS = dict(low=0.5, high=2.0)  # inputs in a positive range (log, sqrt, divide, power)
CONV = dict(fused=("conv2d", "conv2d_weight_grad", "conv2d_input_grad"), tol32=1e-4)  # conv's kernels; sums of ~50
MAX_POOL = dict(fused=("max_pool2d", "max_pool2d_grad"))
AVG_POOL = dict(fused=("avg_pool2d", "avg_pool2d_grad"))
CHANNEL = dict(fused=("channel_sums", "channel_affine"), tol32=1e-4)
CHANNEL_SUMS = dict(CHANNEL, out_dtype="float64")  # sums are accumulated and returned in double


def np_channel_sums(a, b):
    axes = (0,) + tuple(range(2, a.ndim))
    return np.stack([a.sum(axis=axes), (a * b).sum(axis=axes)]).astype(np.float64)


def np_per_channel(v, ndim):
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def np_batch_norm(x, w, b, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * np_per_channel(w, x.ndim) + np_per_channel(b, x.ndim)

LSTM = dict(fused=("lstm_cell", "lstm_cell_grad"))
LOGSOFTMAX = dict(fused=("logsoftmax", "logsoftmax_grad"))  # more fused rows: test_ops_fused.py
SILU = dict(low=-3.0, high=3.0, fused=("silu", "silu_grad"))


def np_silu_grad(x, dy):
    s = 1 / (1 + np.exp(-x))
    return dy * s * (1 + x * (1 - s))


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_lstm_cell(gates, c_prev):
    """(h_new, c_new) of one LSTM step; gates (B, 4H) in the course's order i, f, g, o."""
    a_i, a_f, a_g, a_o = np.split(gates, 4, axis=1)
    i, f, g, o = np_sigmoid(a_i), np_sigmoid(a_f), np.tanh(a_g), np_sigmoid(a_o)
    c = f * c_prev + i * g
    return o * np.tanh(c), c


def np_lstm_cell_grad(gates, c_prev, dh, dc):
    """(dgates, dc_prev): the adjoint of np_lstm_cell for the adjoints dh, dc of (h, c)."""
    a_i, a_f, a_g, a_o = np.split(gates, 4, axis=1)
    i, f, g, o = np_sigmoid(a_i), np_sigmoid(a_f), np.tanh(a_g), np_sigmoid(a_o)
    t = np.tanh(f * c_prev + i * g)
    s = dc + dh * o * (1 - t ** 2)
    dgates = np.concatenate([s * g * i * (1 - i), s * c_prev * f * (1 - f), s * i * (1 - g ** 2),
                             dh * t * o * (1 - o)], axis=1)
    return dgates, s * f


def lstm_both(gates, c_prev):
    out = ndl.ops.lstm_cell(gates, c_prev)
    return ndl.concat([out[0], out[1]], 1)


def lstm_grad_both(gates, c_prev, dh, dc):
    out = ndl.ops.lstm_cell_grad(gates, c_prev, dh, dc)
    return ndl.concat([out[0], out[1]], 1)

# name, needle function, numpy function, input shapes, options: the value range (low, high),
# the float32 forward tolerance (tol32), the fused kernels the op may run (fused) and the
# result's dtype when it is not the inputs' (out_dtype).
CASES = [
    ("add", ndl.add, np.add, [(3, 4), (3, 4)], {}),
    ("add broadcast", ndl.add, np.add, [(3, 1), (1, 4)], {}),
    ("add_scalar", lambda a: ndl.add_scalar(a, 1.5), lambda a: a + 1.5, [(3, 4)], {}),
    ("subtract", ndl.subtract, np.subtract, [(2, 3), (3,)], {}),
    ("operator -", lambda a, b: a - b, np.subtract, [(2, 3), (2, 3)], {}),
    ("multiply", ndl.multiply, np.multiply, [(2, 3, 4), (2, 3, 4)], {}),
    ("multiply broadcast", ndl.multiply, np.multiply, [(4, 1, 3), (2, 1)], {}),
    ("mul_scalar", lambda a: ndl.mul_scalar(a, -2.0), lambda a: a * -2.0, [(3, 4)], {}),
    ("divide", ndl.divide, np.divide, [(3, 4), (3, 4)], POS),
    ("divide_scalar", lambda a: ndl.divide_scalar(a, 4.0), lambda a: a / 4.0, [(3, 4)], {}),
    ("rdivide_scalar", lambda a: ndl.rdivide_scalar(a, 3.0), lambda a: 3.0 / a, [(3, 4)], POS),
    ("power", ndl.power, np.power, [(3, 4), (3, 4)], POS),
    ("power_scalar", lambda a: ndl.power_scalar(a, 3), lambda a: a ** 3, [(3, 4)], {}),
    ("power_scalar frac", lambda a: ndl.power_scalar(a, 0.5), np.sqrt, [(3, 4)], POS),
    ("negate", ndl.negate, np.negative, [(3, 4)], {}),
    ("log", ndl.log, np.log, [(3, 4)], POS),
    ("exp", ndl.exp, np.exp, [(3, 4)], {}),
    ("relu", ndl.relu, lambda a: np.maximum(a, 0), [(3, 4)], {}),
    ("tanh", ndl.tanh, np.tanh, [(3, 4)], {}),
    ("sigmoid", ndl.sigmoid, lambda a: 1 / (1 + np.exp(-a)), [(3, 4)], {}),
    ("sqrt", ndl.sqrt, np.sqrt, [(3, 4)], POS),
    ("abs", ndl.ops.abs, np.abs, [(3, 4)], {}),
    ("erf", ndl.erf, np.vectorize(math.erf), [(3, 4)], {}),
    ("gelu", ndl.gelu, np_gelu, [(3, 4)], dict(low=-3.0, high=3.0)),
    ("silu", ndl.silu, lambda a: a / (1 + np.exp(-a)), [(3, 4)], SILU),
    ("silu 4-D", ndl.silu, lambda a: a / (1 + np.exp(-a)), [(2, 3, 4, 5)], SILU),
    ("silu_grad", ndl.silu_grad, np_silu_grad, [(3, 4), (3, 4)], SILU),
    ("maximum", ndl.maximum, np.maximum, [(3, 4), (3, 4)], {}),
    ("where", lambda c, a, b: ndl.where(ndl.Tensor(c.numpy() > 0, requires_grad=False), a, b),
     lambda c, a, b: np.where(c > 0, a, b), [(3, 4), (3, 4), (4,)], {}),
    ("reshape", lambda a: ndl.reshape(a, (4, 3)), lambda a: a.reshape(4, 3), [(3, 4)], {}),
    ("reshape -1", lambda a: ndl.reshape(a, (2, -1)), lambda a: a.reshape(2, -1), [(3, 4)], {}),
    ("broadcast_to", lambda a: ndl.broadcast_to(a, (2, 3, 4)),
     lambda a: np.broadcast_to(a, (2, 3, 4)), [(3, 1)], {}),
    ("broadcast_to new axes", lambda a: ndl.broadcast_to(a, (5, 4)),
     lambda a: np.broadcast_to(a, (5, 4)), [(4,)], {}),
    ("transpose", ndl.transpose, lambda a: a.swapaxes(-1, -2), [(2, 3, 4)], {}),
    ("transpose pair", lambda a: ndl.transpose(a, (0, 2)), lambda a: a.swapaxes(0, 2),
     [(2, 3, 4)], {}),
    ("transpose perm", lambda a: ndl.transpose(a, (1, 2, 0)), lambda a: a.transpose(1, 2, 0),
     [(2, 3, 4)], {}),
    ("permute", lambda a: ndl.permute(a, (2, 0, 1)), lambda a: a.transpose(2, 0, 1),
     [(2, 3, 4)], {}),
    ("summation", ndl.summation, np.sum, [(3, 4)], {}),
    ("summation axis", lambda a: ndl.summation(a, axes=1), lambda a: a.sum(axis=1),
     [(2, 3, 4)], {}),
    ("summation axes", lambda a: ndl.summation(a, axes=(0, 2)), lambda a: a.sum(axis=(0, 2)),
     [(2, 3, 4)], {}),
    ("summation keepdims", lambda a: ndl.summation(a, axes=(1,), keepdims=True),
     lambda a: a.sum(axis=1, keepdims=True), [(2, 3)], {}),
    ("mean", lambda a: ndl.mean(a, axes=(0,)), lambda a: a.mean(axis=0), [(3, 4)], {}),
    ("max", lambda a: ndl.ops.max(a, axes=(1,)), lambda a: a.max(axis=1), [(3, 4)], {}),
    ("max all", ndl.ops.max, np.max, [(3, 4)], {}),
    ("logsumexp", ndl.logsumexp, np_logsumexp, [(3, 4)], {}),
    ("logsumexp axes", lambda a: ndl.logsumexp(a, axes=(0, 2)),
     lambda a: np_logsumexp(a, axis=(0, 2)), [(2, 3, 4)], {}),
    ("logsumexp keepdims", lambda a: ndl.logsumexp(a, axes=(0,), keepdims=True),
     lambda a: np_logsumexp(a, axis=0, keepdims=True), [(3, 2)], {}),
    ("logsoftmax", ndl.logsoftmax, lambda a: np.log(np_softmax(a)), [(3, 5)], LOGSOFTMAX),
    ("softmax", lambda a: ndl.softmax(a, axis=0), lambda a: np_softmax(a, axis=0), [(3, 5)], {}),
    ("matmul", ndl.matmul, np.matmul, [(3, 4), (4, 5)], {}),
    ("matmul batched", ndl.matmul, np.matmul, [(2, 3, 4), (2, 4, 2)], {}),
    ("matmul broadcast", ndl.matmul, np.matmul, [(2, 1, 3, 4), (3, 4, 2)], {}),
    ("matmul vector", ndl.matmul, np.matmul, [(4,), (2, 4, 3)], {}),
    ("matmul batched @ 2-D", ndl.matmul, np.matmul, [(2, 3, 4), (4, 2)], {}),
    ("matmul matrix @ vector", ndl.matmul, np.matmul, [(2, 3, 4), (4,)], {}),
    ("matmul vector @ vector", ndl.matmul, np.matmul, [(4,), (4,)], {}),
    ("matmul transposed", lambda a, b: ndl.matmul(ndl.transpose(a), b),
     lambda a, b: a.T @ b, [(4, 3), (4, 2)], {}),
    ("flip", lambda a: ndl.flip(a, (0, 2)), lambda a: np.flip(a, (0, 2)), [(2, 3, 4)], {}),
    ("dilate", lambda a: ndl.dilate(a, (1,), 2), lambda a: np_dilate(a, (1,), 2), [(2, 3)], {}),
    ("dilate 2 axes", lambda a: ndl.dilate(a, (1, 2), 1), lambda a: np_dilate(a, (1, 2), 1),
     [(1, 2, 3, 2)], {}),
    ("undilate", lambda a: ndl.undilate(a, (1,), 2), lambda a: np_undilate(a, (1,), 2),
     [(2, 7)], {}),
    ("undilate 2 axes", lambda a: ndl.undilate(a, (0, 1), 1), lambda a: np_undilate(a, (0, 1), 1),
     [(5, 4)], {}),
    ("pad", lambda a: ndl.pad(a, ((1, 0), (2, 1)), 3.0),
     lambda a: np.pad(a, ((1, 0), (2, 1)), constant_values=3.0), [(2, 3)], {}),
    ("concat", lambda a, b: ndl.concat([a, b, a], 1), lambda a, b: np.concatenate([a, b, a], 1),
     [(2, 1), (2, 3)], {}),
    ("getitem", lambda a: ndl.getitem(a, (slice(1, 3), -1)), lambda a: a[1:3, -1], [(4, 3)], {}),
    ("getitem step", lambda a: a[:, ::-2], lambda a: a[:, ::-2], [(2, 5)], {}),
    # Integer-array indexing: repeated indices, so the gradient (a scatter-add) accumulates.
    ("take axis 0", lambda a: ndl.take(a, _IDX(a), 0), lambda a: np.take(a, IDX, 0), [(3, 4)], {}),
    ("take axis 1", lambda a: ndl.take(a, _IDX(a), 1), lambda a: np.take(a, IDX, 1), [(2, 3)], {}),
    ("getitem index tensor", lambda a: a[_IDX(a)], lambda a: a[IDX], [(3, 2)], {}),
    ("setitem", lambda a, v: ndl.setitem(a, (1, slice(0, 2)), v),
     lambda a, v: np_setitem(a, (1, slice(0, 2)), v), [(3, 4), (2,)], {}),
    ("setitem broadcast", lambda a, v: ndl.setitem(a, slice(0, 2), v),
     lambda a, v: np_setitem(a, slice(0, 2), v), [(3, 4), (1,)], {}),
    ("stack", lambda a, b: ndl.stack([a, b, a], 1), lambda a, b: np.stack([a, b, a], 1),
     [(2, 3), (2, 3)], {}),
    ("stack of a tuple", lambda a, b: ndl.stack(ndl.make_tuple(a, b), 0),
     lambda a, b: np.stack([a, b], 0), [(3,), (3,)], {}),
    ("split", lambda a: ndl.split(a, 1)[2] * ndl.split(a, 1)[0],
     lambda a: a[:, 2] * a[:, 0], [(2, 3, 2)], {}),
    ("split then stack", lambda a: ndl.stack(ndl.split(a, 0), 1), lambda a: a.T, [(3, 2)], {}),
    ("make_tuple get_item", lambda a, b: (lambda t: t[0] * t[1] + t[0])(ndl.make_tuple(a, b)),
     lambda a, b: a * b + a, [(3,), (3,)], {}),
    ("fused_add_scalars", lambda a: ndl.fused_add_scalars(a, 1.0, 2.0)[1],
     lambda a: a + 2.0, [(3,)], {}),
    ("fused_add_scalars product", lambda a: (lambda t: t[0] * t[1])(ndl.fused_add_scalars(a, 1.0, -2.0)),
     lambda a: (a + 1.0) * (a - 2.0), [(4,)], {}),
    ("conv stride 1 pad 1", lambda a, b: ndl.conv(a, b, stride=1, padding=1),
     lambda a, b: np_conv(a, b, 1, 1), [(2, 5, 5, 2), (3, 3, 2, 3)], CONV),
    ("conv stride 1 pad 0", lambda a, b: ndl.conv(a, b, stride=1, padding=0),
     lambda a, b: np_conv(a, b, 1, 0), [(1, 5, 4, 2), (3, 3, 2, 2)], CONV),
    ("conv stride 2 pad 1", lambda a, b: ndl.conv(a, b, stride=2, padding=1),
     lambda a, b: np_conv(a, b, 2, 1), [(2, 6, 6, 2), (3, 3, 2, 2)], CONV),
    ("conv stride 2 odd", lambda a, b: ndl.conv(a, b, stride=2, padding=0),
     lambda a, b: np_conv(a, b, 2, 0), [(1, 7, 6, 1), (3, 3, 1, 2)], CONV),
    ("conv kernel 1", lambda a, b: ndl.conv(a, b, stride=1, padding=0),
     lambda a, b: np_conv(a, b, 1, 0), [(1, 3, 3, 2), (1, 1, 2, 3)], CONV),
    ("conv padding > kernel - 1", lambda a, b: ndl.conv(a, b, stride=1, padding=3),
     lambda a, b: np_conv(a, b, 1, 3), [(1, 3, 3, 1), (2, 2, 1, 1)], CONV),
    ("conv stride 3 pad 2", lambda a, b: ndl.conv(a, b, stride=3, padding=2),
     lambda a, b: np_conv(a, b, 3, 2), [(1, 7, 7, 2), (3, 3, 2, 1)], CONV),
    ("conv_weight_grad", lambda x, g: ndl.ops.conv_weight_grad(x, g, 3, 3, 1, 1),
     lambda x, g: np_conv_weight_grad(x, g, 3, 3, 1, 1), [(2, 4, 5, 2), (2, 4, 5, 3)], CONV),
    ("conv_weight_grad stride 2 3x2", lambda x, g: ndl.ops.conv_weight_grad(x, g, 3, 2, 2, 1),
     lambda x, g: np_conv_weight_grad(x, g, 3, 2, 2, 1), [(1, 6, 5, 2), (1, 3, 3, 2)], CONV),
    ("conv_input_grad", lambda g, w: ndl.ops.conv_input_grad(g, w, 4, 5, 1, 1),
     lambda g, w: np_conv_input_grad(g, w, 4, 5, 1, 1), [(2, 4, 5, 3), (3, 3, 2, 3)], CONV),
    ("conv_input_grad stride 2", lambda g, w: ndl.ops.conv_input_grad(g, w, 7, 6, 2, 0),
     lambda g, w: np_conv_input_grad(g, w, 7, 6, 2, 0), [(1, 3, 2, 2), (3, 3, 1, 2)], CONV),
    ("conv_input_grad 2x2 pad 1", lambda g, w: ndl.ops.conv_input_grad(g, w, 4, 3, 1, 1),
     lambda g, w: np_conv_input_grad(g, w, 4, 3, 1, 1), [(2, 5, 4, 3), (2, 2, 2, 3)], CONV),
    ("conv_input_grad 3x2 window", lambda g, w: ndl.ops.conv_input_grad(g, w, 4, 5, 1, 1),
     lambda g, w: np_conv_input_grad(g, w, 4, 5, 1, 1), [(1, 4, 6, 2), (3, 2, 2, 2)], CONV),
    ("conv_input_grad kernel 1", lambda g, w: ndl.ops.conv_input_grad(g, w, 3, 4, 1, 0),
     lambda g, w: np_conv_input_grad(g, w, 3, 4, 1, 0), [(2, 3, 4, 3), (1, 1, 2, 3)], CONV),
    ("im2col", lambda a: ndl.ops.im2col(a, 2, 3, 2), lambda a: np_windows(a, 2, 3, 2),
     [(1, 5, 6, 2)], {}),
    ("max_pool2d", lambda a: ndl.ops.max_pool2d(a, 2),
     lambda a: np_pool(a, 2, 2, 0, np.max, -np.inf), [(2, 4, 4, 2)], MAX_POOL),
    ("max_pool2d overlapping", lambda a: ndl.ops.max_pool2d(a, 3, 1),
     lambda a: np_pool(a, 3, 1, 0, np.max, -np.inf), [(1, 5, 5, 2)], MAX_POOL),
    ("max_pool2d pad 1", lambda a: ndl.ops.max_pool2d(a, 2, 2, 1),
     lambda a: np_pool(a, 2, 2, 1, np.max, -np.inf), [(1, 4, 4, 1)], MAX_POOL),
    ("avg_pool2d", lambda a: ndl.ops.avg_pool2d(a, 2),
     lambda a: np_pool(a, 2, 2, 0, np.mean, 0.0), [(2, 4, 4, 2)], AVG_POOL),
    ("avg_pool2d stride 2 pad 1", lambda a: ndl.ops.avg_pool2d(a, 3, 2, 1),
     lambda a: np_pool(a, 3, 2, 1, np.mean, 0.0), [(1, 5, 5, 1)], AVG_POOL),
    ("upsample_nearest", lambda a: ndl.ops.upsample_nearest(a, 2),
     lambda a: a.repeat(2, axis=-2).repeat(2, axis=-1), [(2, 3, 2, 3)], {}),
    ("channel_sums", ndl.ops.channel_sums, np_channel_sums, [(2, 3, 4, 5), (2, 3, 4, 5)], CHANNEL_SUMS),
    ("channel_sums 2-D", ndl.ops.channel_sums, np_channel_sums, [(5, 3), (5, 3)], CHANNEL_SUMS),
    ("channel_affine", ndl.ops.channel_affine,
     lambda a, s, t: a * np_per_channel(s, 4) + np_per_channel(t, 4), [(2, 3, 4, 5), (3,), (3,)], CHANNEL),
    ("channel_affine 2-D", ndl.ops.channel_affine, lambda a, s, t: a * s + t, [(5, 3), (3,), (3,)], CHANNEL),
    ("batch_norm", lambda x, w, b: ndl.ops.batch_norm(x, w, b)[0], np_batch_norm,
     [(3, 2, 3, 4), (2,), (2,)], CHANNEL),
    ("batch_norm 2-D", lambda x, w, b: ndl.ops.batch_norm(x, w, b)[0], np_batch_norm,
     [(6, 4), (4,), (4,)], CHANNEL),
    # Both outputs side by side, then each alone (the other's adjoint is zero), B = 1 and
    # H = 7 (no multiple of 8); lstm_cell_grad's gradient rows check the second order.
    ("lstm_cell", lstm_both, lambda g, c: np.concatenate(np_lstm_cell(g, c), 1),
     [(3, 20), (3, 5)], LSTM),
    ("lstm_cell h only", lambda g, c: ndl.ops.lstm_cell(g, c)[0], lambda g, c: np_lstm_cell(g, c)[0],
     [(2, 12), (2, 3)], LSTM),
    ("lstm_cell c only", lambda g, c: ndl.ops.lstm_cell(g, c)[1], lambda g, c: np_lstm_cell(g, c)[1],
     [(1, 28), (1, 7)], LSTM),
    ("lstm_cell_grad", lstm_grad_both, lambda *a: np.concatenate(np_lstm_cell_grad(*a), 1),
     [(2, 12), (2, 3), (2, 3), (2, 3)], LSTM),
]
HW2 = {"logsumexp", "logsumexp axes", "logsumexp keepdims", "logsoftmax", "where", "take axis 0",
       "take axis 1", "getitem index tensor"}
HW4_PREFIXES = ("flip", "dilate", "undilate", "pad", "stack", "split", "conv", "im2col",
                "max_pool", "avg_pool")
FRAMEWORK_FORWARD = {"rdivide_scalar", "sigmoid", "sqrt", "abs", "erf", "gelu", "silu", "silu 4-D",
                     "silu_grad", "maximum", "permute", "max", "max all", "softmax", "concat", "getitem", "getitem step",
                     "setitem", "setitem broadcast", "fused_add_scalars", "upsample_nearest",
                     "channel_sums", "channel_sums 2-D", "channel_affine", "channel_affine 2-D",
                     "batch_norm", "batch_norm 2-D", "lstm_cell", "lstm_cell h only",
                     "lstm_cell c only", "lstm_cell_grad"}


def homework(case):
    name = case[0]
    return "hw2" if name in HW2 else "hw4" if name.startswith(HW4_PREFIXES) else "hw1"


def _param(case, forward=False):
    marks = () if forward and case[0] in FRAMEWORK_FORWARD else getattr(pytest.mark, homework(case))
    return pytest.param(case, id=case[0], marks=marks)


FORWARD_PARAMS = [_param(c, forward=True) for c in CASES]
PARAMS = [_param(c) for c in CASES]


def composite(opts, device):
    """A context in which the case's fused kernels (if any) are off on device."""
    return _needle.kernels.disabled(*opts.get("fused", ()), device=device)


def inputs_for(shapes, device, dtype, rng, noncontiguous=False):
    low, high = rng.get("low"), rng.get("high")  # rng: the case's options
    arrays = [np.random.uniform(low, high, s) if low is not None else np.random.randn(*s)
              for s in shapes]
    arrays = [a.astype(dtype) for a in arrays]
    return arrays, [tensor(a, device=device, dtype=dtype, noncontiguous=noncontiguous)
                    for a in arrays]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", FORWARD_PARAMS)
def test_forward(case, device, dtype):
    name, f, ref, shapes, rng = case
    arrays, tensors = inputs_for(shapes, device, dtype, rng)
    with composite(rng, device):
        out = f(*tensors)
    want = ref(*arrays)
    assert out.shape == np.shape(want)
    assert out.dtype == rng.get("out_dtype", dtype)
    tol = rng.get("tol32", 1e-5) if dtype == "float32" else 1e-12
    np.testing.assert_allclose(out.numpy(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("noncontiguous", [False, True], ids=["contiguous", "strided"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", PARAMS)
def test_gradient(case, device, noncontiguous):
    name, f, ref, shapes, rng = case
    _, tensors = inputs_for(shapes, device, "float64", rng, noncontiguous)
    with composite(rng, device):
        check_gradients(f, *tensors)


FUSED_PARAMS = [p for p, c in zip(PARAMS, CASES) if "fused" in c[4]]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", FUSED_PARAMS)
def test_fused_matches_composite(case, device, dtype):
    """The device's fused kernels (where the registry has them) against the composite the op
    runs without them: forward and every input's gradient."""
    name, f, ref, shapes, opts = case
    _, tensors = inputs_for(shapes, device, dtype, opts)

    def run():
        for t in tensors:
            t.grad = None
        out = f(*tensors)
        c = ndl.Tensor(np.linspace(-1, 1, int(np.prod(out.shape))).reshape(out.shape),
                       device=device, dtype=dtype, requires_grad=False)
        (out * c).sum().backward()
        return [out.numpy()] + [t.grad.numpy() for t in tensors]

    fused = run()
    with composite(opts, device):
        composed = run()
    tol = 1e-4 if dtype == "float32" else 1e-10
    for got, want in zip(fused, composed):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_every_registered_kernel_has_a_case():
    """Each fused kernel in the registry is exercised by some case above (device settings
    such as the thread count are not kernels of an op). Framework code: no homework mark."""
    from test_ops_fused import FUSED_CASES  # the fused norm, softmax and loss ops' rows

    covered = {k for c in CASES + FUSED_CASES for k in c[4].get("fused", ())} | {"adam_step"}  # test_optim.py
    covered |= {"attention", "attention_grad"}  # test_attention.py
    covered |= {"group_norm_channels_last", "group_norm_grad_channels_last"}  # test_ops_fused.py
    settings = {"set_num_threads", "get_num_threads"}
    assert {name for name, _ in _needle.kernels.registered()} - settings <= covered


@pytest.mark.hw2
@pytest.mark.parametrize("device", DEVICES)
def test_softmax_family_on_infinite_rows(device):
    """Rows of all -inf or holding +inf: softmax, logsoftmax and logsumexp as in PyTorch."""
    torch = pytest.importorskip("torch")
    inf = np.inf
    x = np.array([[-inf, -inf, -inf], [1.0, inf, 0.0], [-inf, 1.0, 2.0], [3.0, 1.0, 2.0]])
    t = torch.tensor(x)
    X = ndl.Tensor(x, device=device)
    np.testing.assert_allclose(ndl.softmax(X).numpy(), torch.softmax(t, -1).numpy())
    np.testing.assert_allclose(ndl.logsoftmax(X).numpy(), torch.log_softmax(t, -1).numpy())
    np.testing.assert_allclose(ndl.logsumexp(X, axes=(1,)).numpy(), torch.logsumexp(t, -1).numpy())


@pytest.mark.hw4
@pytest.mark.parametrize("device", DEVICES)
def test_op_classes(device):
    a = tensor(np.random.randn(3, 4), device=device)
    b = tensor(np.random.randn(3, 4), device=device)
    op = ndl.ops.EWiseMul()
    np.testing.assert_allclose(op.compute(a.cached_data, b.cached_data).numpy(), a.numpy() * b.numpy())
    out = op(a, b)
    assert out.op is not None and out.inputs[0] is a
    ones = ndl.Tensor(np.ones((3, 4)), device=device)
    ga, gb = op.gradient(ones, out)
    np.testing.assert_allclose(ga.numpy(), b.numpy())
    assert len(op.gradient_as_tuple(ones, out)) == 2
    s = ndl.ops.Summation((1,))
    assert s.axes == [1]
    assert isinstance(s.gradient(ndl.Tensor(np.ones(3), device=device), s(a)), ndl.Tensor)
    assert ndl.ops.AddScalar(2.0).scalar == 2.0
    assert ndl.ops.Transpose()(a).shape == (4, 3)
    assert ndl.ops.Reshape((2, 6))(a).shape == (2, 6)
    assert ndl.ops.BroadcastTo((2, 3, 4))(a).shape == (2, 3, 4)
    assert ndl.ops.LogSumExp(axes=(1,))(a).shape == (3,)
    # Stack takes a TensorTuple, as the course builds it.
    st = ndl.ops.Stack(0)(ndl.make_tuple(a, b))
    assert st.shape == (2, 3, 4)
    parts = ndl.ops.Split(0)(st)
    assert isinstance(parts, ndl.TensorTuple) and len(parts) == 2
    np.testing.assert_allclose(parts[1].numpy(), b.numpy())
    assert [p.shape for p in parts.tuple()] == [(3, 4), (3, 4)]
    assert isinstance(ndl.ops.Split(0), ndl.autograd.TensorTupleOp)
    arrays = ndl.ops.Split(1).compute(a.cached_data)
    assert len(arrays) == 4
    t = ndl.make_tuple(a, b) + ndl.make_tuple(b, a)
    np.testing.assert_allclose(t[0].numpy(), a.numpy() + b.numpy())
    assert "needle.TensorTuple(" in repr(t)


@pytest.mark.parametrize("device", DEVICES)
def test_lstm_cell_api(device):
    """ops.lstm_cell returns the TensorTuple (h, c); LSTMCell is a TensorTupleOp, callable and
    with compute, fused or not; the CPU registers both kernels. Framework code: no mark."""
    g, c = np.random.randn(2, 8), np.random.randn(2, 2)
    gates, c_prev = tensor(g, device=device), tensor(c, device=device)
    want = np_lstm_cell(g, c)
    op = ndl.ops.LSTMCell()
    assert isinstance(op, ndl.autograd.TensorTupleOp) and op.returns_tuple
    assert isinstance(ndl.ops.LSTMCellGrad(), ndl.autograd.TensorTupleOp)
    assert not hasattr(ndl, "LSTMCell")  # the module is nn.LSTMCell; the op is ops.LSTMCell
    for fused in (True, False):
        with contextlib.nullcontext() if fused else composite(LSTM, device):
            out = ndl.ops.lstm_cell(gates, c_prev)
            assert isinstance(out, ndl.TensorTuple) and len(out) == 2
            assert isinstance(op(gates, c_prev), ndl.TensorTuple)
            arrays = op.compute(gates.cached_data, c_prev.cached_data)
            for k in range(2):
                np.testing.assert_allclose(out[k].numpy(), want[k], rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(arrays[k].numpy(), want[k], rtol=1e-12, atol=1e-12)
    assert _needle.kernels.has("lstm_cell", "cpu") and _needle.kernels.has("lstm_cell_grad", "cpu")


@pytest.mark.hw4
@pytest.mark.parametrize("device", DEVICES)
def test_against_torch(device):
    torch = pytest.importorskip("torch")
    x = np.random.randn(3, 4, 5)
    # logsumexp, with large values
    for axes in [None, (1,), (0, 2)]:
        big = x * 1000
        got = ndl.logsumexp(ndl.Tensor(big, device=device), axes=axes).numpy()
        want = torch.logsumexp(torch.tensor(big), dim=axes if axes else (0, 1, 2)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-10)
    # stack forward and backward
    parts = [np.random.randn(3, 4) for _ in range(3)]
    for axis in range(3):
        A = [ndl.Tensor(p, device=device) for p in parts]
        T = [torch.tensor(p, requires_grad=True) for p in parts]
        out = ndl.stack(A, axis=axis)
        ref = torch.stack(T, dim=axis)
        np.testing.assert_allclose(out.numpy(), ref.detach().numpy())
        (out * out).sum().backward()
        (ref * ref).sum().backward()
        for a, t in zip(A, T):
            np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy())


@pytest.mark.hw1
@pytest.mark.parametrize("device", DEVICES)
def test_course_cases(device):
    # Forward cases from the course's hw1 tests.
    np.testing.assert_allclose(
        ndl.divide(ndl.Tensor([[3.3, 4.35, 1.2], [2.45, 0.95, 2.55]], device=device),
                   ndl.Tensor([[4.6, 4.35, 4.8], [0.65, 0.7, 4.4]], device=device)).numpy(),
        np.array([[0.717391304348, 1.0, 0.25], [3.769230769231, 1.357142857143, 0.579545454545]]),
        rtol=1e-6)
    np.testing.assert_allclose(
        ndl.transpose(ndl.Tensor([[[1.95]], [[2.7]], [[3.75]]], device=device), axes=(1, 2)).numpy(),
        np.array([[[1.95]], [[2.7]], [[3.75]]]))
    np.testing.assert_allclose(
        ndl.summation(ndl.Tensor([[1.0, 2.0], [3.0, 4.0]], device=device), axes=(1,)).numpy(), [3.0, 7.0])
    # The course's gradient checks (op.gradient_as_tuple against numerical gradients).
    gradient_check(ndl.divide, ndl.Tensor(np.random.randn(5, 4)), ndl.Tensor(5 + np.random.randn(5, 4)))
    gradient_check(ndl.power_scalar, ndl.Tensor(np.random.randn(5, 4)), scalar=np.random.randint(1))
    gradient_check(ndl.summation, ndl.Tensor(np.random.randn(5, 4)), axes=(1,))
    gradient_check(ndl.broadcast_to, ndl.Tensor(np.random.randn(3, 1)), shape=(3, 3))
    gradient_check(ndl.matmul, ndl.Tensor(np.random.randn(6, 5, 4)), ndl.Tensor(np.random.randn(4, 3)))
    gradient_check(ndl.transpose, ndl.Tensor(np.random.randn(3, 5, 4)), axes=(0, 1))


@pytest.mark.hw2
def test_course_logsumexp():
    gradient_check(ndl.logsumexp, ndl.Tensor(np.random.randn(5, 4, 3)), axes=(0, 2))
    gradient_check(ndl.logsumexp, ndl.Tensor(np.random.randn(5, 4, 3)), axes=None)
    np.testing.assert_allclose(
        ndl.logsumexp(ndl.Tensor(np.array([[1e6, 1e6 + 1], [-1e6, -1e6]])), axes=(1,)).numpy(),
        [1e6 + 1 + np.log1p(np.exp(-1)), -1e6 + np.log(2)])


@pytest.mark.hw1
def test_errors():
    a = ndl.Tensor(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"broadcast"):
        ndl.broadcast_to(a, (3, 5))
    with pytest.raises(ValueError):
        ndl.concat([a, ndl.Tensor(np.ones((4, 3)))], 0)
    with pytest.raises(IndexError):
        ndl.transpose(a, (0, 5))
    with pytest.raises(ValueError):
        ndl.summation(a, axes=(1, 1))


@pytest.mark.hw4
def test_errors_hw4():
    a = ndl.Tensor(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"\[stack\]"):
        ndl.stack([a, ndl.Tensor(np.ones((4, 3)))], 0)
    with pytest.raises(IndexError):
        ndl.logsumexp(a, axes=(3,))


@pytest.mark.parametrize("device", DEVICES)
def test_argmax_and_argmin(device):
    x = np.random.randn(3, 5, 4)
    x[1, 2, :] = x[1, 0, :]  # ties: the first index wins, as in numpy
    t = ndl.Tensor(x, device=device)
    for axis in (None, 0, 1, -1):
        for fn, ref in ((ndl.argmax, np.argmax), (ndl.argmin, np.argmin)):
            got = fn(t, axis)
            assert got.dtype == "int64" and not got.requires_grad
            np.testing.assert_array_equal(got.numpy(), ref(x, axis=axis))
    np.testing.assert_array_equal(ndl.argmax(t, 1, keepdims=True).numpy(),
                                  np.argmax(x, axis=1, keepdims=True))
    with pytest.raises(IndexError, match="take"):
        ndl.take(t, ndl.Tensor([5], device=device), 0)


@pytest.mark.parametrize("device", DEVICES)
def test_silu_keeps_a_permuted_layout(device):
    """silu of an NCHW view of an NHWC array (nn.Conv's output) runs on the NHWC block and
    gives its result in that memory order; its gradient with a row-major dy matches the
    composite's. Framework code: no homework mark."""
    np.random.seed(3)
    nhwc = np.random.randn(2, 3, 4, 5)
    x = ndl.Tensor(nhwc, device=device, requires_grad=True)
    view = x.permute((0, 3, 1, 2))
    dy = np.random.randn(2, 5, 3, 4)

    def run():
        x.grad = None
        y = ndl.silu(view)
        y.backward(ndl.Tensor(dy, device=device))
        return y, x.grad.numpy()

    y, grad = run()
    assert y.realize_cached_data().strides == view.realize_cached_data().strides
    with composite(SILU, device):
        y_ref, grad_ref = run()
    np.testing.assert_allclose(y.numpy(), y_ref.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y.numpy(), np.transpose(nhwc, (0, 3, 1, 2)) / (1 + np.exp(-np.transpose(nhwc, (0, 3, 1, 2)))),
                               rtol=1e-12)
