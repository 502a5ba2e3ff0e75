"""needle.ops: the op classes (course names, e.g. ``EWiseAdd``, ``Summation(axes)``) and
functions (``add``, ``summation(a, axes=None)``, ``conv(a, b, stride=1, padding=1)``, ...).

Every op is a C++ class (``needle/ops/``) bound directly: calling ``ops.add(a, b)`` or
``ops.EWiseAdd()(a, b)`` builds the graph node in one C++ call. Each op object has
``compute(*ndarrays)``, ``gradient(out_grad, node)`` and ``gradient_as_tuple(out_grad, node)``.
"""
from .ops_mathematic import *  # noqa: F401,F403
from .ops_logarithmic import *  # noqa: F401,F403
from .ops_tuple import *  # noqa: F401,F403
from .ops_mathematic import max, abs  # noqa: F401,A004 (ops.max / ops.abs, not starred)
from .ops_tuple import (  # noqa: F401 (ops.X, not ndl.X)
    LSTMCell, LSTMCellGrad, LayerNorm, LayerNormGrad, GroupNorm, GroupNormGrad)
from . import ops_mathematic as _m, ops_logarithmic as _l, ops_tuple as _t
from ..autograd import TensorOp as _TensorOp, TensorTupleOp as _TensorTupleOp
from .._needle import Op as _CppOp

__all__ = _m.__all__ + _l.__all__ + _t.__all__


def _register_cpp_ops():
    """Makes ``isinstance(op, TensorOp)`` (or ``TensorTupleOp``) true for the C++ ops."""
    from .. import _needle

    for name in dir(_needle.ops):
        cls = getattr(_needle.ops, name)
        if isinstance(cls, type) and issubclass(cls, _CppOp):
            tuple_ops = {"MakeTensorTuple", "FusedAddScalars", "Split", "LSTMCell", "LSTMCellGrad",
                         "LSTMSequence", "ScaledDotProductAttention", "ScaledDotProductAttentionGrad",
                         "LayerNorm", "LayerNormGrad", "GroupNorm", "GroupNormGrad"}
            (_TensorTupleOp if name in tuple_ops else _TensorOp).register(cls)


_register_cpp_ops()
