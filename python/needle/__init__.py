"""Needle: a small, complete, teachable deep-learning framework with a C++ core.

    import needle as ndl
    x = ndl.Tensor([[1.0, 2.0]], requires_grad=True)
    (x * x).sum().backward()
    x.grad  # -> needle.Tensor([[2. 4.]])
"""
from . import backend_ndarray
from .backend_ndarray import cpu, cuda, cpu_numpy, default_device, all_devices
from . import autograd, ops
from .autograd import Tensor, TensorTuple, Value
from .ops import *
from . import init, nn, optim, data
from .init import ones, zeros, ones_like, zeros_like
from .serialization import save, load
from ._needle import set_num_threads, get_num_threads
