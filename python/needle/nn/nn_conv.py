"""Convolution modules (``needle.nn``): Conv, ConvTranspose, MaxPool2d, AvgPool2d, Upsample.

Modules take and return NCHW tensors, like the course's and PyTorch's; the C++ ops run
NHWC (channels innermost, so a convolution is one matrix product over each pixel's
window), so each forward moves the channel axis in and out around its op. Weights are
(k, k, in, out), the layout ``ops.conv`` multiplies with.
"""
import math

import numpy as np

import needle.init as init
from needle import ops
from needle.autograd import Tensor

from .nn_basic import Module, Parameter, _check_ndim, _positive_int

__all__ = ["Conv", "ConvTranspose", "MaxPool2d", "AvgPool2d", "Upsample"]


def _check_channels(op, x, channels):
    _check_ndim(op, x, 4, "(N, C, H, W)")
    if x.shape[1] != channels:
        raise ValueError(f"[{op}] expects {channels} input channels (N, C, H, W), got shape {tuple(x.shape)}")


def _to_nhwc(x: Tensor) -> Tensor:
    return x.transpose((1, 2)).transpose((2, 3))


def _to_nchw(x: Tensor) -> Tensor:
    return x.transpose((2, 3)).transpose((1, 2))


class Conv(Module):
    """2-D convolution of NCHW input with a square kernel, zero "same" padding
    (``kernel_size // 2``, or ``padding`` when given) and the given stride.

    weight (k, k, in_channels, out_channels) ~ kaiming_uniform with fan_in = in·k·k,
    drawn before the bias (out_channels,) ~ U(-1/sqrt(in·k·k), 1/sqrt(in·k·k)).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, bias=True,
                 device=None, dtype="float32", padding=None):
        super().__init__()
        for name, n in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("kernel_size", kernel_size), ("stride", stride)):
            _positive_int("Conv", name, n)
        if padding is not None and (not isinstance(padding, (int, np.integer)) or padding < 0):
            raise ValueError(f"[Conv] padding must be None or an int >= 0, got {padding!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2 if padding is None else int(padding)
        # BEGIN SOLUTION hw4
        k = kernel_size
        fan_in, fan_out = in_channels * k * k, out_channels * k * k
        self.weight = Parameter(init.kaiming_uniform(
            fan_in, fan_out, shape=(k, k, in_channels, out_channels), device=device, dtype=dtype))
        if bias:
            bound = 1.0 / math.sqrt(fan_in)
            self.bias = Parameter(init.rand(out_channels, low=-bound, high=bound, device=device, dtype=dtype))
        else:
            self.bias = None
        # END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        _check_channels("Conv", x, self.in_channels)
        # BEGIN SOLUTION hw4
        out = ops.conv(_to_nhwc(x), self.weight, stride=self.stride, padding=self.padding)
        if self.bias is not None:
            out = out + self.bias.broadcast_to(out.shape)
        return _to_nchw(out)
        # END SOLUTION


class ConvTranspose(Module):
    """The transpose (adjoint) of a Conv: upsamples NCHW input by ``stride``.

    Output size (H - 1)·stride - 2·padding + kernel_size + output_padding, as PyTorch's
    ConvTranspose2d. weight (k, k, out_channels, in_channels): the weight of the
    convolution it transposes (which maps out_channels to in_channels), like PyTorch's
    (in, out, k, k); bias (out_channels,). Initialized as Conv, with fan_in = in·k·k.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, bias=True, device=None, dtype="float32"):
        super().__init__()
        for name, n in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("kernel_size", kernel_size), ("stride", stride)):
            _positive_int("ConvTranspose", name, n)
        if not isinstance(padding, (int, np.integer)) or padding < 0:
            raise ValueError(f"[ConvTranspose] padding must be an int >= 0, got {padding!r}")
        if not isinstance(output_padding, (int, np.integer)) or not 0 <= output_padding < stride:
            raise ValueError(
                f"[ConvTranspose] output_padding must be an int in [0, stride) = [0, {stride}), "
                f"got {output_padding!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = int(padding)
        self.output_padding = int(output_padding)
        # BEGIN SOLUTION hw4
        k = kernel_size
        fan_in, fan_out = in_channels * k * k, out_channels * k * k
        self.weight = Parameter(init.kaiming_uniform(
            fan_in, fan_out, shape=(k, k, out_channels, in_channels), device=device, dtype=dtype))
        if bias:
            bound = 1.0 / math.sqrt(fan_in)
            self.bias = Parameter(init.rand(out_channels, low=-bound, high=bound, device=device, dtype=dtype))
        else:
            self.bias = None
        # END SOLUTION

    def output_size(self, n):
        """The output height (or width) for an input of height (or width) n."""
        return (n - 1) * self.stride - 2 * self.padding + self.kernel_size + self.output_padding

    def forward(self, x: Tensor) -> Tensor:
        _check_channels("ConvTranspose", x, self.in_channels)
        h, w = self.output_size(x.shape[2]), self.output_size(x.shape[3])
        if h < 1 or w < 1:
            raise ValueError(
                f"[ConvTranspose] input of shape {tuple(x.shape)} gives an empty output ({h} x {w}) "
                f"at kernel {self.kernel_size}, stride {self.stride}, padding {self.padding}")
        # BEGIN SOLUTION hw4
        # The gradient of conv with respect to its input is exactly a transposed convolution.
        out = ops.conv_input_grad(_to_nhwc(x), self.weight, h, w, self.stride, self.padding)
        if self.bias is not None:
            out = out + self.bias.broadcast_to(out.shape)
        return _to_nchw(out)
        # END SOLUTION


class _Pool2d(Module):
    _op = None  # the ops function, NHWC

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__
        _positive_int(name, "kernel_size", kernel_size)
        if stride is not None:
            _positive_int(name, "stride", stride)
        if not isinstance(padding, (int, np.integer)) or not 0 <= padding <= kernel_size // 2:
            raise ValueError(f"[{name}] padding must be an int in [0, kernel_size // 2], got {padding!r}")
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = int(padding)

    def forward(self, x: Tensor) -> Tensor:
        _check_ndim(type(self).__name__, x, 4, "(N, C, H, W)")
        pool = type(self)._op
        return _to_nchw(pool(_to_nhwc(x), self.kernel_size, self.stride, self.padding))


class MaxPool2d(_Pool2d):
    """The max of each kernel_size x kernel_size window of NCHW input (stride defaults to
    the kernel size; padding never wins)."""

    _op = staticmethod(ops.max_pool2d)


class AvgPool2d(_Pool2d):
    """The mean of each kernel_size x kernel_size window of NCHW input (stride defaults to
    the kernel size; zero padding counts toward the mean, as PyTorch's default)."""

    _op = staticmethod(ops.avg_pool2d)


class Upsample(Module):
    """Nearest-neighbour upsampling of NCHW input by an integer scale factor."""

    def __init__(self, scale_factor=2, mode="nearest"):
        super().__init__()
        _positive_int("Upsample", "scale_factor", scale_factor)
        if mode != "nearest":
            raise ValueError(f"[Upsample] only mode='nearest' is supported, got {mode!r}")
        self.scale_factor = int(scale_factor)
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        _check_ndim("Upsample", x, 4, "(N, C, H, W)")
        return ops.upsample_nearest(x, self.scale_factor)
