"""Element-wise, shape, reduction-by-sum, linear-algebra and convolution ops (the course's
ops_mathematic), all C++ classes and functions from ``needle._needle.ops``."""
from .._needle import ops as _ops

_CLASSES = [
    "EWiseAdd", "AddScalar", "EWiseSub", "EWiseMul", "MulScalar", "EWisePow", "PowerScalar",
    "EWiseDiv", "DivScalar", "RDivScalar", "Negate", "Log", "Exp", "ReLU", "Tanh", "Sigmoid",
    "Sqrt", "Abs", "Erf", "GELU", "SiLU", "SiLUGrad", "Maximum", "Where", "ArgMax", "Take", "ScatterAdd", "AsType", "ToDevice",
    "Transpose", "Permute", "Reshape", "BroadcastTo", "Summation", "Max", "MatMul", "Flip",
    "Dilate", "UnDilate", "Pad", "Concat", "GetItem", "SetItem", "Conv",
    "ConvWeightGrad", "Im2Col", "ChannelSums", "ChannelAffine", "SoftmaxCrossEntropy",
    "SoftmaxCrossEntropyGrad", "ScaledDotProductAttention", "ScaledDotProductAttentionGrad",
]
_FUNCTIONS = [
    "add", "add_scalar", "subtract", "multiply", "mul_scalar", "power", "power_scalar",
    "divide", "divide_scalar", "rdivide_scalar", "negate", "log", "exp", "relu", "tanh",
    "sigmoid", "sqrt", "erf", "gelu", "silu", "silu_grad", "maximum", "where", "argmax", "argmin", "take", "scatter_add", "astype", "to_device",
    "transpose", "permute", "reshape", "broadcast_to", "summation", "mean", "matmul",
    "flip", "dilate", "undilate", "pad", "concat", "getitem", "setitem", "conv",
    "conv_input_grad", "conv_weight_grad", "im2col", "max_pool2d", "avg_pool2d", "upsample_nearest",
    "channel_sums", "channel_affine", "batch_norm", "layer_norm", "group_norm", "softmax_cross_entropy", "softmax_cross_entropy_grad",
    "scaled_dot_product_attention",
]
# max and abs are ops.max / ops.abs only: `from needle.ops import *` must not shadow the
# builtins in the importing module.
_NOT_STARRED = ["max", "abs"]
__all__ = _CLASSES + _FUNCTIONS
globals().update({name: getattr(_ops, name) for name in __all__ + _NOT_STARRED})
