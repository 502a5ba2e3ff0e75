"""Datasets, the DataLoader and its DistributedSampler, image transforms and the BPE tokenizer
(``needle.data``)."""
from .data_basic import *  # noqa: F401,F403
from .distributed_sampler import *  # noqa: F401,F403
from .data_transforms import *  # noqa: F401,F403
from .datasets import *  # noqa: F401,F403
from .tokenizer import *  # noqa: F401,F403
