"""Word-level text corpora in the Penn Treebank layout (``needle.data``): Dictionary,
Corpus, batchify and get_batch, as the course defines them.

A corpus folder holds ``train.txt`` and ``test.txt`` (``valid.txt`` too, when present),
one sentence per line, words separated by whitespace. Each line becomes its words
followed by ``<eos>``; the Dictionary numbers words in the order they are first seen
(training text first). ``batchify`` cuts a token stream into ``batch_size`` columns;
``get_batch`` takes ``bptt`` rows of them and the next-token targets.
"""
import os

import numpy as np

import needle as ndl

__all__ = ["Dictionary", "Corpus", "batchify", "get_batch"]


class Dictionary:
    """Words <-> ids: ``word2idx`` (dict) and ``idx2word`` (list), ids in order of first use."""

    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        """The id of ``word``, adding it (with the next id) if it is new."""
        # BEGIN SOLUTION hw5
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]
        # END SOLUTION

    def __len__(self):
        # BEGIN SOLUTION hw5
        return len(self.idx2word)
        # END SOLUTION


class Corpus:
    """The token ids of ``base_dir``'s ``train.txt`` and ``test.txt`` (and ``valid.txt``
    when it exists, else ``valid`` is None), read through one shared ``dictionary``;
    ``max_lines`` reads only each file's first lines."""

    def __init__(self, base_dir, max_lines=None):
        if max_lines is not None and (not isinstance(max_lines, (int, np.integer)) or max_lines < 0):
            raise ValueError(f"[Corpus] max_lines must be None or an int >= 0, got {max_lines!r}")
        for name in ("train.txt", "test.txt"):
            if not os.path.isfile(os.path.join(base_dir, name)):
                raise FileNotFoundError(f"[Corpus] no {name} in {base_dir!r} (expected train.txt and test.txt)")
        self.dictionary = Dictionary()
        self.train = self.tokenize(os.path.join(base_dir, "train.txt"), max_lines)
        self.test = self.tokenize(os.path.join(base_dir, "test.txt"), max_lines)
        valid = os.path.join(base_dir, "valid.txt")
        self.valid = self.tokenize(valid, max_lines) if os.path.isfile(valid) else None

    def tokenize(self, path, max_lines=None):
        """The ids of the first ``max_lines`` lines of ``path`` (every line when None): each
        line's whitespace-separated words, then ``<eos>``, added to the dictionary."""
        # BEGIN SOLUTION hw5
        ids = []
        with open(path, encoding="utf-8") as f:
            for k, line in enumerate(f):
                if max_lines is not None and k >= max_lines:
                    break
                for word in line.split() + ["<eos>"]:
                    ids.append(self.dictionary.add_word(word))
        return ids
        # END SOLUTION


def batchify(data, batch_size, device, dtype):
    """A token stream cut into ``batch_size`` equal columns, trailing tokens dropped: a
    numpy array of shape (len(data) // batch_size, batch_size) whose column j holds the
    j-th consecutive stretch of ``data``."""
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"[batchify] batch_size must be a positive int, got {batch_size!r}")
    if len(data) < batch_size:
        raise ValueError(f"[batchify] {len(data)} tokens cannot fill batch_size {batch_size} columns")
    # BEGIN SOLUTION hw5
    nbatch = len(data) // batch_size
    return np.asarray(data[: nbatch * batch_size], dtype=dtype).reshape(batch_size, nbatch).T.copy()
    # END SOLUTION


def get_batch(batches, i, bptt, device=None, dtype=None):
    """Rows i .. i + bptt of ``batches`` (fewer at the end) and their next tokens:
    ``(X (seq_len, bs), y (seq_len·bs,))`` as Tensors, y = rows i + 1 .. i + seq_len
    flattened row by row."""
    if not 0 <= i < len(batches) - 1:
        raise IndexError(f"[get_batch] row {i} has no next row in batches of {len(batches)} rows")
    if bptt <= 0:
        raise ValueError(f"[get_batch] bptt must be positive, got {bptt!r}")
    # BEGIN SOLUTION hw5
    seq_len = min(bptt, len(batches) - 1 - i)
    data = batches[i : i + seq_len]
    target = batches[i + 1 : i + 1 + seq_len].reshape(-1)
    return ndl.Tensor(data, device=device, dtype=dtype), ndl.Tensor(target, device=device, dtype=dtype)
    # END SOLUTION
