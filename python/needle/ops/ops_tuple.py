"""Ops on TensorTuples: MakeTensorTuple, TupleGetItem, Split, Stack, FusedAddScalars."""
from .._needle import ops as _ops

__all__ = [
    "MakeTensorTuple", "TupleGetItem", "FusedAddScalars", "Split", "Stack", "make_tuple",
    "tuple_get_item", "fused_add_scalars", "split", "stack",
]
globals().update({name: getattr(_ops, name) for name in __all__})
