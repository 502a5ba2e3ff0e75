"""The course's ops_logarithmic: LogSoftmax, LogSumExp (numerically stable), and Softmax."""
from .._needle import ops as _ops

__all__ = ["LogSoftmax", "LogSumExp", "Softmax", "logsoftmax", "logsumexp", "softmax"]
globals().update({name: getattr(_ops, name) for name in __all__})
