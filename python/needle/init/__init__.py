"""Initializers: tensors filled with constants or random draws (``needle.init``).

Random draws come from numpy's global RNG in the course framework's order, so
``np.random.seed(s)`` followed by the same calls gives the course's values.
"""
from .init_basic import *  # noqa: F401,F403
from .init_initializers import *  # noqa: F401,F403
