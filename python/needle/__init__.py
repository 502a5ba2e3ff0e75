"""Needle: a small, complete, teachable deep-learning framework with a C++ core.

    import needle as ndl
    x = ndl.Tensor([[1.0, 2.0]], requires_grad=True)
    (x * x).sum().backward()
    x.grad  # -> needle.Tensor([[2. 4.]])
"""
from . import backend_ndarray
from .backend_ndarray import cpu, cuda, cpu_numpy, default_device, all_devices

try:  # The layers above NDArray arrive area by area; keep `import needle` working meanwhile.
    from . import autograd, ops
    from .autograd import Tensor, TensorTuple, Value
    from .ops import *
except ImportError as _missing:  # pragma: no cover - only while the package is incomplete
    import warnings as _warnings

    _warnings.warn(f"needle: tensor layer unavailable ({_missing})")
