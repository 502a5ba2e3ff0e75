"""Checkpoints: ``needle.save`` / ``needle.load`` in the safetensors format.

    ndl.save(model.state_dict(), "model.safetensors")
    model.load_state_dict(ndl.load("model.safetensors"))

The file is a standard safetensors file (8-byte little-endian header length, JSON
header, raw little-endian data), so other tools (``safetensors``, PyTorch) read it.
The C++ core writes it atomically (temporary file ``<path>.tmp-<pid>-XXXXXX`` in the
same directory, fsync, rename): a failed save leaves any existing file untouched and no
partial file. A save that is killed cannot remove its temporary file; the next save of
the same path removes those whose writer process is gone. Only regular files are read or
replaced: a FIFO, device or directory raises ValueError (loading never blocks). A
truncated, corrupt or non-safetensors file (a header that is not UTF-8 JSON, a shape whose
size does not fit in 64 bits) raises ValueError naming the file.
"""
import os
from collections.abc import Mapping

import numpy as np

from . import _needle
from .backend_ndarray import NDArray

__all__ = ["save", "load", "load_metadata"]


def _as_array(name, value):
    """NDArray or numpy array for ``value`` (a Tensor, NDArray, numpy array or nested list)."""
    if isinstance(value, NDArray):
        return value
    if hasattr(value, "realize_cached_data"):  # a needle Tensor (Parameter, ...)
        return value.realize_cached_data()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"needle.save: '{name}' must be a Tensor, NDArray or numeric array, "
            f"got {type(value).__name__}"
        )
    # The C++ side copies it C-contiguous (keeps 0-d arrays 0-d) in its own dtype, or the
    # nearest one Needle has (docs/dtypes.md: float16 -> float32, int16 -> int32, ...).
    return array


def save(obj, path, metadata=None):
    """Write ``obj`` (a dict of name -> Tensor / NDArray / numpy array, or a Module, whose
    ``state_dict()`` is saved) to ``path`` as safetensors. ``metadata``: optional dict of
    str -> str stored in the header's ``__metadata__``."""
    if hasattr(obj, "state_dict") and callable(obj.state_dict) and not isinstance(obj, Mapping):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"needle.save expects a dict of name -> Tensor, got {type(obj).__name__}")
    arrays = {}
    for name, value in obj.items():
        if not isinstance(name, str):
            raise TypeError(f"needle.save: names must be str, got {type(name).__name__} ({name!r})")
        arrays[name] = _as_array(name, value)
    if metadata is not None:
        metadata = {str(k): str(v) for k, v in dict(metadata).items()}
    _needle.save(arrays, os.fspath(path), metadata)


def load(path, device=None):
    """Read a safetensors file: dict of name -> Tensor (every dtype as stored,
    ``requires_grad=False``) on ``device`` (the default device when None)."""
    return dict(_needle.load(os.fspath(path), device))


def load_metadata(path):
    """The ``__metadata__`` dict of a safetensors file (str -> str)."""
    return dict(_needle.load_metadata(os.fspath(path)))
