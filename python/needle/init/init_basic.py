"""Basic initializers: uniform/normal/Bernoulli draws, constants, one-hot, *_like.

Every random draw goes through the device's ``rand``/``randn`` (numpy's global RNG,
``np.random.rand`` / ``np.random.randn``), one call per initializer, in the order the
course framework makes them. That order is part of the API: graders seed numpy and
compare values.
"""
import numpy as np

import needle as ndl

__all__ = [
    "rand",
    "randn",
    "constant",
    "ones",
    "zeros",
    "randb",
    "one_hot",
    "check_class_indices",
    "zeros_like",
    "ones_like",
]


def _shape(shape):
    # Accept rand(2, 3) (the course's form) and rand((2, 3)) (PyTorch's).
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(int(s) for s in shape[0])
    return tuple(int(s) for s in shape)


def rand(*shape, low=0.0, high=1.0, device=None, dtype="float32", requires_grad=False):
    """Uniform numbers in [low, high), drawn with ``np.random.rand(*shape)``."""
    # BEGIN SOLUTION hw2
    device = ndl.backend_ndarray.default_device() if device is None else device
    array = device.rand(*_shape(shape), dtype=dtype) * (high - low) + low
    return ndl.Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)
    # END SOLUTION


def randn(*shape, mean=0.0, std=1.0, device=None, dtype="float32", requires_grad=False):
    """Normal numbers with the given mean and std, drawn with ``np.random.randn(*shape)``."""
    # BEGIN SOLUTION hw2
    device = ndl.backend_ndarray.default_device() if device is None else device
    array = device.randn(*_shape(shape), dtype=dtype) * std + mean
    return ndl.Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)
    # END SOLUTION


def constant(*shape, c=1.0, device=None, dtype="float32", requires_grad=False):
    """A tensor of the given shape filled with ``c``."""
    # BEGIN SOLUTION hw2
    device = ndl.backend_ndarray.default_device() if device is None else device
    array = device.full(_shape(shape), c, dtype=dtype)
    return ndl.Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)
    # END SOLUTION


def ones(*shape, device=None, dtype="float32", requires_grad=False):
    """A tensor of ones."""
    return constant(*shape, c=1.0, device=device, dtype=dtype, requires_grad=requires_grad)


def zeros(*shape, device=None, dtype="float32", requires_grad=False):
    """A tensor of zeros."""
    return constant(*shape, c=0.0, device=device, dtype=dtype, requires_grad=requires_grad)


def randb(*shape, p=0.5, device=None, dtype="bool", requires_grad=False):
    """Bernoulli(p) draws ``np.random.rand(*shape) < p`` (compared in float64, as numpy
    does), as a bool tensor by default or as 1/0 in ``dtype``."""
    # BEGIN SOLUTION hw2
    device = ndl.backend_ndarray.default_device() if device is None else device
    array = device.rand(*_shape(shape), dtype="float64") < p
    return ndl.Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)
    # END SOLUTION


def check_class_indices(op, n, i):
    """Raise ValueError unless ``i`` (a Tensor, NDArray, numpy array, list or number) holds
    integer class indices in [0, n): integer or bool data, or floats with integer values."""
    values = np.asarray(i.numpy() if hasattr(i, "numpy") else i)
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
        raise ValueError(f"[{op}] class indices must be integers, got dtype {values.dtype}")
    if values.size == 0:
        return
    if np.issubdtype(values.dtype, np.inexact):
        bad = values[~np.isfinite(values) | (values != np.round(values))]
        if bad.size:
            raise ValueError(f"[{op}] class indices must be integers, got {bad.flat[0]}")
    low, high = values.min(), values.max()
    if low < 0 or high >= n:
        raise ValueError(f"[{op}] class indices must lie in [0, {n}), got {low}..{high}")


def one_hot(n, i, device=None, dtype="float32", requires_grad=False):
    """One-hot rows: ``out[k, i[k]] = 1`` with ``n`` columns; ``i`` holds class indices
    (an integer Tensor, NDArray or array; floats must hold integer values)."""
    check_class_indices("one_hot", n, i)
    # BEGIN SOLUTION hw2
    device = ndl.backend_ndarray.default_device() if device is None else device
    if hasattr(i, "numpy"):
        i = i.numpy()
    idx = np.asarray(i).astype(np.int64)
    array = device.one_hot(n, idx, dtype=dtype)
    return ndl.Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)
    # END SOLUTION


def zeros_like(array, *, device=None, requires_grad=False):
    """Zeros with the shape and dtype of ``array`` (on its device unless ``device`` is given)."""
    device = device if device else array.device
    return zeros(*array.shape, dtype=array.dtype, device=device, requires_grad=requires_grad)


def ones_like(array, *, device=None, requires_grad=False):
    """Ones with the shape and dtype of ``array`` (on its device unless ``device`` is given)."""
    device = device if device else array.device
    return ones(*array.shape, dtype=array.dtype, device=device, requires_grad=requires_grad)
