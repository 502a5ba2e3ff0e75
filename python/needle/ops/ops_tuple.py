"""Ops on TensorTuples: MakeTensorTuple, TupleGetItem, Split, Stack, FusedAddScalars, and
lstm_cell / lstm_cell_grad (one LSTM step, returning (h, c); needle/ops/ops_rnn.h) and
lstm_sequence (T steps of a layer, returning (hs, cs)), and
layer_norm_stats / layer_norm_grad (layer norm's (y, mean, rstd) and its adjoint's
(dx, dweight, dbias); needle/ops/ops_norm.h), and group_norm_stats / group_norm_grad (the
same for group norm; needle/ops/ops_group_norm.h)."""
from .._needle import ops as _ops

__all__ = [
    "MakeTensorTuple", "TupleGetItem", "FusedAddScalars", "Split", "Stack", "make_tuple",
    "tuple_get_item", "fused_add_scalars", "split", "stack", "lstm_cell", "lstm_cell_grad",
    "lstm_sequence", "layer_norm_stats", "layer_norm_grad", "group_norm_stats", "group_norm_grad",
]
# The LSTM and layer- and group-norm op classes are needle.ops.LSTMCell / LayerNorm ... only: not starred
# into `needle`, where ndl.LSTMCell would be easy to mistake for the module nn.LSTMCell.
_NOT_STARRED = ["LSTMCell", "LSTMCellGrad", "LSTMSequence", "LayerNorm", "LayerNormGrad", "GroupNorm",
                "GroupNormGrad"]
globals().update({name: getattr(_ops, name) for name in __all__ + _NOT_STARRED})
