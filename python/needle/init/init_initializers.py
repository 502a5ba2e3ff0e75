"""Weight initializers (Xavier/Glorot and Kaiming/He), as in the course framework.

Shapes default to (fan_in, fan_out); ``kaiming_uniform``/``kaiming_normal`` take a
``shape`` that overrides it (conv kernels are (K, K, C_in, C_out) with
fan_in = K*K*C_in). Each makes exactly one draw from numpy's global RNG.
"""
import math

from .init_basic import rand, randn

__all__ = ["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"]


def _gain(nonlinearity):
    if nonlinearity != "relu":
        raise ValueError(f"[kaiming] only nonlinearity='relu' is supported, got {nonlinearity!r}")
    return math.sqrt(2.0)


def _check_fans(op, fan_in, fan_out):
    """ValueError naming the initializer unless both fans are positive (the bounds divide by them)."""
    if not (fan_in > 0 and fan_out > 0):
        raise ValueError(f"[{op}] fan_in and fan_out must be positive, got {fan_in}, {fan_out}")


def xavier_uniform(fan_in, fan_out, gain=1.0, **kwargs):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    _check_fans("xavier_uniform", fan_in, fan_out)
    # BEGIN SOLUTION hw2
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rand(fan_in, fan_out, low=-a, high=a, **kwargs)
    # END SOLUTION


def xavier_normal(fan_in, fan_out, gain=1.0, **kwargs):
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    _check_fans("xavier_normal", fan_in, fan_out)
    # BEGIN SOLUTION hw2
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return randn(fan_in, fan_out, mean=0.0, std=std, **kwargs)
    # END SOLUTION


def kaiming_uniform(fan_in, fan_out, shape=None, nonlinearity="relu", **kwargs):
    """U(-b, b) with b = sqrt(2) * sqrt(3 / fan_in); shape (fan_in, fan_out) unless given."""
    _check_fans("kaiming_uniform", fan_in, fan_out)
    # BEGIN SOLUTION hw2
    bound = _gain(nonlinearity) * math.sqrt(3.0 / fan_in)
    shape = (fan_in, fan_out) if shape is None else tuple(shape)
    return rand(*shape, low=-bound, high=bound, **kwargs)
    # END SOLUTION


def kaiming_normal(fan_in, fan_out, nonlinearity="relu", shape=None, **kwargs):
    """N(0, std^2) with std = sqrt(2) / sqrt(fan_in); shape (fan_in, fan_out) unless given."""
    _check_fans("kaiming_normal", fan_in, fan_out)
    # BEGIN SOLUTION hw2
    std = _gain(nonlinearity) / math.sqrt(fan_in)
    shape = (fan_in, fan_out) if shape is None else tuple(shape)
    return randn(*shape, mean=0.0, std=std, **kwargs)
    # END SOLUTION

