"""The King James Bible as a text corpus (``needle.data``): ``kjv_verses`` reads it from
Debian's ``bible-kjv`` package, ``kjv_corpus`` writes deterministic train/valid/test
splits of it in the Penn Treebank layout that ``Corpus`` reads.

``bible -f "Gen1:1-Rev22:21"`` prints the 31,102 verses one per line, each after its
reference ("Ge1:1 In the beginning God created ..."). The splits put every ``every``-th
verse (by default the 20th, from verse 10) into ``valid.txt``, the verse after each of
those into ``test.txt``, and the rest, in order, into ``train.txt``. The word-level
files are PTB-style: lower case, punctuation split off as its own tokens, the verse
references dropped (each would be a word seen once), and words seen fewer than
``min_count`` times in the training verses written as ``<unk>``.
"""
import os
import re
import shutil
import subprocess
from collections import Counter

__all__ = ["kjv_verses", "kjv_splits", "kjv_corpus"]

_BIBLE = "bible"
_ALL_VERSES = "Gen1:1-Rev22:21"
_VERSE = re.compile(r"^(\S+:\d+)\s+(.*)$")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*|[0-9]+|[^\sa-z0-9]")
_FORMAT_VERSION = "kjv-ptb 1"


def kjv_verses(keep_references=False):
    """Every verse of the King James Bible, in order, as a list of strings (with its
    reference, e.g. "Ge1:1 In the beginning ...", when ``keep_references``)."""
    if shutil.which(_BIBLE) is None:
        raise RuntimeError(
            "[kjv_verses] the `bible` program is missing: install Debian's bible-kjv package "
            "(.ci/install-deps bible-kjv)")
    text = subprocess.run([_BIBLE, "-f", _ALL_VERSES], check=True, capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "100000"}).stdout
    verses = []
    for line in text.splitlines():
        match = _VERSE.match(line.strip())
        if match is None:
            continue
        verses.append(f"{match[1]} {match[2]}" if keep_references else match[2])
    if len(verses) < 31000:
        raise RuntimeError(f"[kjv_verses] `bible` printed only {len(verses)} verses (expected 31,102)")
    return verses


def _words(verse):
    return _WORD.findall(verse.lower())


def kjv_splits(verses, every=20):
    """(train, valid, test) lists of verses: every ``every``-th verse from index
    ``every // 2`` is valid, the one after it test, the rest train."""
    if every < 3:
        raise ValueError(f"[kjv_corpus] every must be >= 3 (one verse each for valid and test), got {every}")
    train, valid, test = [], [], []
    for k, verse in enumerate(verses):
        r = (k - every // 2) % every
        (valid if r == 0 else test if r == 1 else train).append(verse)
    return train, valid, test


def kjv_corpus(base_dir=os.path.join("data", "kjv"), every=20, min_count=2):
    """Writes the word-level KJV splits into ``base_dir`` (train.txt, valid.txt,
    test.txt, once: kept while their recorded options match) and returns ``base_dir``,
    ready for ``Corpus(base_dir)``."""
    options = f"{_FORMAT_VERSION} every={every} min_count={min_count}"
    stamp = os.path.join(base_dir, "README")
    if os.path.isfile(stamp):
        with open(stamp, encoding="utf-8") as f:
            if f.readline().strip() == options:
                return base_dir
    splits = [[_words(v) for v in part] for part in kjv_splits(kjv_verses(), every)]
    counts = Counter(w for verse in splits[0] for w in verse)
    os.makedirs(base_dir, exist_ok=True)
    for name, verses in zip(("train.txt", "valid.txt", "test.txt"), splits):
        tmp = os.path.join(base_dir, name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for verse in verses:
                f.write(" ".join(w if counts[w] >= min_count else "<unk>" for w in verse) + "\n")
        os.replace(tmp, os.path.join(base_dir, name))
    with open(stamp, "w", encoding="utf-8") as f:
        f.write(options + "\nThe King James Bible (Debian's bible-kjv) in the Penn Treebank layout; "
                "written by needle.data.kjv_corpus.\n")
    return base_dir
