"""Dataset classes: in-memory arrays and MNIST-format idx files (CIFAR-10, PTB, KJV
and token-window modules are picked up when their files exist)."""
import importlib as _importlib
import importlib.util as _importlib_util

from .mnist_dataset import *  # noqa: F401,F403
from .ndarray_dataset import *  # noqa: F401,F403

for _name in ("cifar10_dataset", "ptb_dataset", "kjv_dataset", "text_dataset"):
    if _importlib_util.find_spec(f"{__name__}.{_name}") is not None:
        _mod = _importlib.import_module(f"{__name__}.{_name}")
        _names = getattr(_mod, "__all__", [k for k in vars(_mod) if not k.startswith("_")])
        globals().update({_k: getattr(_mod, _k) for _k in _names})
