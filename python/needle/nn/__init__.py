"""Neural-network modules (``needle.nn``).

``nn_basic`` holds the course's basic layers; the other families (containers, conv, sequence,
attention, transformer, diffusion) are imported when their files exist, so each
family can land on its own.
"""
import importlib as _importlib
import importlib.util as _importlib_util

from .nn_basic import *  # noqa: F401,F403

for _family in ("nn_containers", "nn_conv", "nn_sequence", "nn_attention", "nn_transformer", "nn_diffusion",
                "nn_distributed"):
    if _importlib_util.find_spec(f"{__name__}.{_family}") is not None:
        _mod = _importlib.import_module(f"{__name__}.{_family}")
        _names = getattr(_mod, "__all__", [k for k in vars(_mod) if not k.startswith("_")])
        globals().update({_k: getattr(_mod, _k) for _k in _names})

