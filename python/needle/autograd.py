"""needle.autograd: Value, Tensor and TensorTuple, the op base classes, and backward.

Tensor, TensorTuple and Value are the C++ graph nodes (bound from ``needle/tensor.h``);
backward runs in C++ (``needle/autograd.cc``). Ops written in Python plug into the same
graph: subclass ``TensorOp`` and define ``compute(*ndarrays)`` (forward on NDArrays) and
``gradient(out_grad, node)`` (with Tensor ops), then call the op on tensors::

    class Square(TensorOp):
        def compute(self, a):
            return a * a
        def gradient(self, out_grad, node):
            return out_grad * node.inputs[0] * 2

    y = Square()(x)        # a graph node; y.backward() calls Square.gradient

Module attributes, as in the course framework: ``TENSOR_COUNTER`` (live tensors, read-only)
and ``LAZY_MODE`` (assignable: when True, ops record the graph and compute on demand).
"""
import abc
import contextlib
import sys
import types

from . import _needle
from ._needle import Tensor, TensorTuple, Value

_ag = _needle.autograd

__all__ = [
    "Value", "Tensor", "TensorTuple", "Op", "TensorOp", "TensorTupleOp", "find_topo_sort",
    "compute_gradient_of_variables", "no_grad", "enable_grad", "set_grad_enabled",
    "is_grad_enabled", "TENSOR_COUNTER", "LAZY_MODE",
]


class Op(abc.ABC):
    """An operator: ``compute`` on NDArrays and ``gradient`` with Tensor ops."""

    def __call__(self, *args):
        raise NotImplementedError()

    def compute(self, *args):
        """Forward on the inputs' NDArrays (a tuple of NDArrays for a TensorTuple input)."""
        raise NotImplementedError()

    def gradient(self, out_grad, node):
        """The adjoint of each input given the adjoint ``out_grad`` of ``node``: one Value,
        or a tuple with one per input."""
        raise NotImplementedError()

    def gradient_as_tuple(self, out_grad, node):
        """``gradient``, always as a tuple."""
        output = self.gradient(out_grad, node)
        if isinstance(output, tuple):
            return output
        if isinstance(output, list):
            return tuple(output)
        return (output,)


class TensorOp(Op):
    """An op whose output is a Tensor."""

    def __call__(self, *args):
        return Tensor.make_from_op(self, args)


class TensorTupleOp(Op):
    """An op whose output is a TensorTuple."""

    def __call__(self, *args):
        return TensorTuple.make_from_op(self, args)


def find_topo_sort(node_list):
    """Every node the given nodes depend on, each after its inputs (post-order DFS)."""
    return _ag.find_topo_sort(list(node_list))


def compute_gradient_of_variables(output_tensor, out_grad):
    """Reverse-mode AD: sets ``.grad`` on every node ``output_tensor`` depends on that
    requires grad (accumulating into existing grads, except when ``output_tensor`` is itself
    a gradient: ``x.grad.backward()`` computes second derivatives, as in the course)."""
    _ag.compute_gradient_of_variables(output_tensor, out_grad)


def is_grad_enabled():
    return _ag.is_grad_enabled()


@contextlib.contextmanager
def set_grad_enabled(mode):
    """Context manager: grad mode on or off inside the block."""
    previous = _ag.set_grad_enabled(bool(mode))
    try:
        yield
    finally:
        _ag.set_grad_enabled(previous)


def no_grad():
    """``with no_grad(): ...`` builds no graph: results are constant (detached) tensors."""
    return set_grad_enabled(False)


def enable_grad():
    return set_grad_enabled(True)


class _AutogradModule(types.ModuleType):
    """Gives the module its live attributes TENSOR_COUNTER and LAZY_MODE."""

    @property
    def TENSOR_COUNTER(self):
        return _ag.live_tensor_count()

    @property
    def LAZY_MODE(self):
        return _ag.is_lazy_mode()

    @LAZY_MODE.setter
    def LAZY_MODE(self, value):
        _ag.set_lazy_mode(bool(value))


sys.modules[__name__].__class__ = _AutogradModule
