"""Needle: a small, complete, teachable deep-learning framework with a C++ core.

    import needle as ndl
    x = ndl.Tensor([[1.0, 2.0]], requires_grad=True)
    (x * x).sum().backward()
    x.grad  # -> needle.Tensor([[2. 4.]])
"""
import os as _os

# Idle OpenMP threads sleep instead of spinning (libgomp spins for a while after each
# parallel loop by default). On a machine with few cores the spinning threads take the
# cores that OpenBLAS's own threads and the next op need: a GPT training step here took 1.4 s
# at the median with spinning, 0.35 s without. Read when libgomp loads, so it is set before
# the extension is imported; a value in the environment wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import backend_ndarray  # noqa: E402
from .backend_ndarray import cpu, cuda, cpu_numpy, default_device, all_devices
from . import autograd, ops
from .autograd import Tensor, TensorTuple, Value
from .ops import *
from . import init, nn, optim, data
from .init import ones, zeros, ones_like, zeros_like
from .serialization import save, load
from ._needle import set_num_threads, get_num_threads
