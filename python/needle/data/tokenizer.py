"""Byte-level BPE tokenizer (``needle.data.BPETokenizer``), a thin wrapper of the C++ one
(needle/text/bpe_tokenizer.h), where training and encoding run.

The vocabulary is the 256 byte values (ids 0..255), then one token per learned merge, then
the special tokens. Text is UTF-8: ``decode(encode(s)) == s`` for every str ``s`` that UTF-8
can encode (not one with lone surrogates: UnicodeEncodeError). ``decode`` of ids whose bytes
are not valid UTF-8 (a multi-byte character cut between tokens) replaces them with U+FFFD;
``decode_bytes`` returns the exact bytes. The file format and the pre-split rules are in
docs/tokenizer.md.
"""
from .. import _needle

__all__ = ["BPETokenizer"]


class BPETokenizer:
    """Byte-level BPE, as GPT-2's: ``train(text, vocab_size)``, ``encode`` / ``decode``.

    >>> tok = BPETokenizer()
    >>> tok.train("the cat sat on the mat", vocab_size=260, special_tokens=["<|endoftext|>"])
    >>> tok.decode(tok.encode("the mat<|endoftext|>"))
    'the mat<|endoftext|>'
    """

    def __init__(self):
        self._impl = _needle.text.BPETokenizer()

    def train(self, text, vocab_size, special_tokens=()):
        """Learn merges from ``text`` (str) until the vocabulary has ``vocab_size`` tokens:
        256 bytes + merges + ``special_tokens`` (a sequence of str, which get the last ids).

        Special tokens are cut out of the text first, so no merge spans one. Each step
        merges the most frequent adjacent pair (ties: the smallest pair of ids); training
        stops early, with a smaller vocabulary, when no pair is left. Replaces any earlier
        training. ValueError when ``vocab_size < 256 + len(special_tokens)``."""
        self._impl = _needle.text.BPETokenizer.trained(text, vocab_size, special_tokens)

    def encode(self, text):
        """Token ids (list of int) of ``text`` (str); special tokens become their ids."""
        return self._impl.encode(text)

    def encode_bytes(self, data):
        """Token ids (list of int) of ``data`` (bytes)."""
        return self._impl.encode_bytes(data)

    def decode(self, ids):
        """The str of token ids (a list, tuple, numpy integer array or needle Tensor);
        bytes that are not valid UTF-8 become U+FFFD. ValueError for an id outside
        ``[0, vocab_size)``."""
        return self._impl.decode(_ids(ids))

    def decode_bytes(self, ids):
        """The exact bytes of token ids."""
        return self._impl.decode_bytes(_ids(ids))

    @property
    def vocab_size(self):
        """256 + number of merges + number of special tokens."""
        return self._impl.vocab_size

    @property
    def merges(self):
        """The merges in the order learned: merge ``i``, a pair of ids, made token 256 + i."""
        return self._impl.merges

    @property
    def special_tokens(self):
        """The special tokens (str), in the order of their ids."""
        return [s.decode("utf-8", "replace") for s in self._impl.special_tokens]

    def special_token_id(self, token):
        """The id of special token ``token`` (str); KeyError when it is not one."""
        specials = self.special_tokens
        if token not in specials:
            raise KeyError(f"{token!r} is not a special token of this tokenizer")
        return self.vocab_size - len(specials) + specials.index(token)

    def token_bytes(self, id):
        """The bytes that token ``id`` stands for."""
        return self._impl.token_bytes(id)

    def save(self, path):
        """Write the tokenizer to ``path`` (str or os.PathLike), atomically."""
        self._impl.save(path)

    @classmethod
    def load(cls, path):
        """A tokenizer that ``save`` wrote; ValueError naming the file and line when the
        file is damaged."""
        tok = cls.__new__(cls)
        tok._impl = _needle.text.BPETokenizer.load(path)
        return tok

    def __len__(self):
        return self.vocab_size

    def __repr__(self):
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={self.special_tokens!r})")


def _ids(ids):
    """needle Tensors and NDArrays as numpy arrays; anything else as given (the C++ side
    checks it)."""
    if callable(getattr(ids, "numpy", None)):
        return ids.numpy()
    return ids
