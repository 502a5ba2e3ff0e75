"""Needle: a small, complete, teachable deep-learning framework with a C++ core.

    import needle as ndl
    x = ndl.Tensor([[1.0, 2.0]], requires_grad=True)
    (x * x).sum().backward()
    x.grad  # -> needle.Tensor([[2. 4.]])
"""
import os as _os

# Idle OpenMP threads spin only briefly (10,000 turns, tens of microseconds) before they
# sleep; libgomp's default is 300,000. Short enough that spinning threads do not take the
# cores OpenBLAS's threads and other processes need (a GPT training step here, with two
# other jobs running, took 4.2 s with the default, 0.35 s without spinning), long enough
# that the next op's parallel loop still finds them awake (sleeping at once made a ViT
# step 38 -> 56 ms on an idle machine). libgomp reads it when it loads, so it is set before
# the extension is imported; OMP_WAIT_POLICY or GOMP_SPINCOUNT in the environment win.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from . import backend_ndarray  # noqa: E402
from .backend_ndarray import cpu, cuda, cpu_numpy, default_device, all_devices
from . import autograd, ops
from .autograd import Tensor, TensorTuple, Value
from .ops import *
from . import init, nn, optim, data
from .init import ones, zeros, ones_like, zeros_like
from .serialization import save, load
from ._needle import set_num_threads, get_num_threads
