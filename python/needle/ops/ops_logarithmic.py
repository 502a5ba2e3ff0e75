"""The course's ops_logarithmic: LogSoftmax, LogSumExp (numerically stable), and Softmax;
with their adjoints as ops (SoftmaxGrad, LogSoftmaxGrad: fused kernels on the last axis)."""
from .._needle import ops as _ops

__all__ = ["LogSoftmax", "LogSumExp", "Softmax", "SoftmaxGrad", "LogSoftmaxGrad", "logsoftmax",
           "logsumexp", "softmax", "softmax_grad", "logsoftmax_grad"]
globals().update({name: getattr(_ops, name) for name in __all__})
