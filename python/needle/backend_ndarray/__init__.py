"""needle.backend_ndarray: devices and the NDArray, as in the course framework.

The array itself is the C++ ``needle::NDArray`` (bound as ``NDArray``); this module adds the
device constructors, the device conveniences (``randn``, ``rand``, ``one_hot``, ``empty``,
``full``), the module-level functions of the course's ``ndarray.py``, the course's
``NDArray.process_slice`` helper, and ``DType``, the str subclass that ``.dtype`` returns.
"""
import numpy as np

from .. import _needle
from .._needle import Array, Device, NDArray, concatenate, stack, where

__all__ = [
    "Array", "Device", "NDArray", "DType", "cpu", "cuda", "cpu_numpy", "default_device", "all_devices",
    "array", "empty", "full", "broadcast_to", "reshape", "maximum", "log", "exp", "tanh", "sum",
    "flip", "concatenate", "stack", "where", "argmax",
]


class DType(str):
    """A dtype as ``.dtype`` returns it: its name ("float32", "int64", "bool", ...), which
    also compares equal to numpy's spellings of the same dtype (``np.float32``,
    ``np.dtype("float32")``, ``float`` for float64), as a numpy array's ``dtype`` does."""

    __slots__ = ()

    def __eq__(self, other):
        if isinstance(other, str):
            return str.__eq__(self, other)
        if isinstance(other, (np.dtype, type)):
            try:
                return np.dtype(other) == np.dtype(str(self))
            except TypeError:
                return False
        return NotImplemented

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = str.__hash__

    @property
    def name(self):
        return str(self)

    @property
    def itemsize(self):
        return np.dtype(str(self)).itemsize


_needle._set_dtype_class(DType)


def _process_slice(self, sl, dim):
    """The course's helper: ``sl`` with start, stop and step filled in for axis ``dim``
    (None -> the full range, negative bounds counted from the end, clamped to the axis)."""
    n = self.shape[dim]
    start, stop, step = sl.indices(n)
    if step < 0 and stop < 0:
        stop = None  # "before index 0": -1 would mean the last element
    return slice(start, stop, step)


NDArray.process_slice = _process_slice


def cpu():
    """The CPU device."""
    return _needle.device("cpu")


def cuda():
    """The CUDA device; ``cuda().enabled()`` is False when no GPU can be used."""
    return _needle.device("cuda")


def cpu_numpy():
    """The course's numpy-backed CPU device. Needle's CPU backend plays that part."""
    return cpu()


def default_device():
    return cpu()


def all_devices():
    """Every registered device, enabled or not."""
    return [_needle.device(name) for name in _needle.all_device_names()]


# --- Device conveniences: draws come from numpy's global RNG, as in the course. ---
def _randn(self, *shape, dtype="float32"):
    return NDArray(np.random.randn(*shape).astype(dtype), device=self, dtype=dtype)


def _rand(self, *shape, dtype="float32"):
    return NDArray(np.random.rand(*shape).astype(dtype), device=self, dtype=dtype)


def _one_hot(self, n, i, dtype="float32"):
    idx = np.asarray(i, dtype=np.int64)
    rows = np.zeros((idx.size, n), dtype=dtype)  # not np.eye(n)[i]: that is n x n
    rows[np.arange(idx.size), idx.reshape(-1)] = 1
    return NDArray(rows.reshape(idx.shape + (n,)), device=self, dtype=dtype)


def _empty(self, shape, dtype="float32"):
    return NDArray.make(_as_shape(shape), device=self, dtype=dtype)


def _full(self, shape, fill_value, dtype="float32"):
    out = _empty(self, shape, dtype)
    out.fill(fill_value)
    return out


Device.randn = _randn
Device.rand = _rand
Device.one_hot = _one_hot
Device.empty = _empty
Device.full = _full


def _as_shape(shape):
    return (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)


# --- Module functions of the course's ndarray.py ---
def array(a, dtype="float32", device=None):
    """An NDArray from a list, numpy array or NDArray (float32 unless ``dtype`` says otherwise)."""
    dtype = "float32" if dtype is None else dtype
    return NDArray(a, device=device, dtype=dtype)


def empty(shape, dtype="float32", device=None):
    return (device or default_device()).empty(shape, dtype)


def full(shape, fill_value, dtype="float32", device=None):
    return (device or default_device()).full(shape, fill_value, dtype)


def broadcast_to(array, new_shape):
    return array.broadcast_to(new_shape)


def reshape(array, new_shape):
    return array.reshape(new_shape)


def maximum(a, b):
    return a.maximum(b)


def log(a):
    return a.log()


def exp(a):
    return a.exp()


def tanh(a):
    return a.tanh()


def sum(a, axis=None, keepdims=False):
    return a.sum(axis=axis, keepdims=keepdims)


def flip(a, axes):
    return a.flip(axes)


def argmax(a, axis=None, keepdims=False):
    return a.argmax(axis=axis, keepdims=keepdims)
