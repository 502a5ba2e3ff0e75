"""BPE tokenizer benchmark: needle.data.BPETokenizer vs SentencePiece (BPE), side by side.

    PYTHONPATH=python /usr/bin/python3 bench/bench_tokenizer.py [--quick]

Both train on the King James Bible (`bible -f "Gen1:1-Rev22:21"`, Debian's bible-kjv, 4.4 MB;
the benchmark skips with a message when it is not installed) to a vocabulary of 4096, then
encode it: as one string, and line by line (SentencePiece's usual input: it treats each line
as a sentence with a leading "▁"). Reported: training time, encode speed (MB of UTF-8 per
second; needle's first call fills its piece cache, later calls hit it), tokens per byte and
whether decode(encode(text)) gives the text back. SentencePiece runs with byte_fallback,
character_coverage=1.0, the identity normalization and every core; needle trains on one.
Each side runs in its own process (a fresh interpreter per library); --quick uses the first
quarter of the text.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from timing import StealMeter, best_time  # noqa: E402

VOCAB = 4096


def mb_per_s(n_bytes, seconds):
    return n_bytes / seconds / 1e6


def run_needle(text):
    from needle.data import BPETokenizer

    n_bytes = len(text.encode("utf-8"))
    lines = text.splitlines()
    tok = BPETokenizer()
    start = time.perf_counter()
    tok.train(text, VOCAB)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    ids = tok.encode(text)
    cold_s = time.perf_counter() - start
    whole_s = best_time(lambda: tok.encode(text), repeat=3, min_time=0.5)
    line_ids = [tok.encode(line) for line in lines]
    lines_s = best_time(lambda: [tok.encode(line) for line in lines], repeat=3, min_time=0.5)
    return {
        "vocab": tok.vocab_size, "train_s": train_s,
        "encode_cold": mb_per_s(n_bytes, cold_s), "encode_whole": mb_per_s(n_bytes, whole_s),
        "encode_lines": mb_per_s(n_bytes, lines_s),
        "tokens_per_byte_whole": len(ids) / n_bytes,
        "tokens_per_byte_lines": sum(map(len, line_ids)) / n_bytes,
        "round_trip": tok.decode(ids) == text,
    }


def run_sentencepiece(text):
    import sentencepiece as spm

    n_bytes = len(text.encode("utf-8"))
    lines = text.splitlines()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write(text)
        start = time.perf_counter()
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=os.path.join(tmp, "m"), vocab_size=VOCAB, model_type="bpe",
            character_coverage=1.0, byte_fallback=True, normalization_rule_name="identity",
            num_threads=os.cpu_count(), minloglevel=2)
        train_s = time.perf_counter() - start
        sp = spm.SentencePieceProcessor(model_file=os.path.join(tmp, "m.model"))
    start = time.perf_counter()  # one call: SentencePiece is slow on one long "sentence"
    ids = sp.encode(text)
    whole_s = time.perf_counter() - start
    line_ids = sp.encode(lines)
    lines_s = best_time(lambda: sp.encode(lines), repeat=3, min_time=0.5)
    return {
        "vocab": sp.get_piece_size(), "train_s": train_s,
        "encode_cold": mb_per_s(n_bytes, whole_s), "encode_whole": mb_per_s(n_bytes, whole_s),
        "encode_lines": mb_per_s(n_bytes, lines_s),
        "tokens_per_byte_whole": len(ids) / n_bytes,
        "tokens_per_byte_lines": sum(map(len, line_ids)) / n_bytes,
        "round_trip": sp.decode(ids) == text,
    }


def side_in_child(side, path, quick):
    cmd = [sys.executable, os.path.abspath(__file__), "--side", side, path] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{side} benchmark failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    quick = "--quick" in sys.argv
    if "--side" in sys.argv:
        side, path = sys.argv[sys.argv.index("--side") + 1 : sys.argv.index("--side") + 3]
        with open(path, encoding="utf-8") as f:
            text = f.read()
        print(json.dumps(run_needle(text) if side == "needle" else run_sentencepiece(text)))
        return
    if shutil.which("bible") is None:
        print("bench_tokenizer: skipped, the King James Bible is not installed "
              "(.ci/install-deps bible-kjv)")
        return
    text = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True,
                          check=True).stdout
    if quick:
        text = text[: len(text) // 4]
    try:
        import sentencepiece  # noqa: F401
        have_spm = True
    except ImportError:
        have_spm = False
        print("sentencepiece is not installed (.ci/install-deps python3-sentencepiece): needle only")
    steal = StealMeter()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kjv.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        needle = side_in_child("needle", path, quick)
        spm = side_in_child("sentencepiece", path, quick) if have_spm else None
    n_mb = len(text.encode("utf-8")) / 1e6
    print(f"BPE tokenizer: King James Bible ({n_mb:.2f} MB), vocabulary {VOCAB}, "
          f"{os.cpu_count()} cores, each side in its own process")
    rows = [
        ("train (s)", "train_s", "{:.2f}", True),
        ("encode whole text, first call (MB/s)", "encode_cold", "{:.1f}", False),
        ("encode whole text (MB/s)", "encode_whole", "{:.1f}", False),
        ("encode line by line (MB/s)", "encode_lines", "{:.1f}", False),
        ("tokens per byte, whole text", "tokens_per_byte_whole", "{:.4f}", None),
        ("tokens per byte, line by line", "tokens_per_byte_lines", "{:.4f}", None),
        ("vocabulary size", "vocab", "{}", None),
        ("decode(encode(text)) == text", "round_trip", "{}", None),
    ]
    print(f"{'':<40} {'needle':>10} {'sentencepiece':>14} {'needle faster':>14}")
    for name, key, fmt, lower_is_better in rows:
        ours = fmt.format(needle[key])
        theirs = fmt.format(spm[key]) if spm else "-"
        ratio = ""
        if spm and lower_is_better is not None:
            r = spm[key] / needle[key] if lower_is_better else needle[key] / spm[key]
            ratio = f"{r:.1f}x"
        print(f"{name:<40} {ours:>10} {theirs:>14} {ratio:>14}")
    print(steal.report())


if __name__ == "__main__":
    main()
