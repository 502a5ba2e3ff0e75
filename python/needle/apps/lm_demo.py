"""Needle's language-model job: an LSTM language model on the King James Bible.

    python -m needle.apps.lm_demo [--steps N] [--minutes M] [--batch-size B] [--bptt T]
                                  [--embedding E] [--hidden H] [--layers L] [--lr LR]
                                  [--clip C] [--data-dir DIR] [--device cpu|cuda] [--out DIR]

Writes the word-level KJV splits (``needle.data.kjv_corpus``: Debian's bible-kjv, every
20th verse to valid and the next to test, PTB-style tokens) into --data-dir once, reads
them with ``Corpus``, and trains ``LanguageModel(..., seq_model='lstm')`` with SGD and
gradient clipping (truncated backpropagation through time over windows of --bptt
tokens, the state carried across windows) for --steps windows or --minutes, whichever
ends first, the learning rate decayed linearly to a tenth. It prints progress, the
validation perplexity every --eval-every steps and at the end, saves the weights
(safetensors) into --out, and prints a passage sampled from the model after a prompt.
The last line is ``validation perplexity: N``.
"""
import math
import os
import sys
import time

import numpy as np

from needle.apps.demo import Progress, UsageError, _Parser, get_device, no_grad, run_cli

PROMPT = "and god said"


def parse_args(argv):
    p = _Parser(prog="python -m needle.apps.lm_demo",
                description="Train an LSTM language model on the King James Bible with needle.")
    p.add_argument("--steps", type=int, default=700, help="training windows (default 700)")
    p.add_argument("--minutes", type=float, default=4.5, help="stop training after this long (default 4.5)")
    p.add_argument("--batch-size", type=int, default=32, help="parallel streams (default 32)")
    p.add_argument("--bptt", type=int, default=35, help="tokens per window (default 35)")
    p.add_argument("--embedding", type=int, default=200, help="embedding size (default 200)")
    p.add_argument("--hidden", type=int, default=200, help="LSTM hidden size (default 200)")
    p.add_argument("--layers", type=int, default=1, help="LSTM layers (default 1)")
    p.add_argument("--lr", type=float, default=20.0, help="initial SGD learning rate (default 20)")
    p.add_argument("--clip", type=float, default=0.25, help="gradient-norm clip (default 0.25)")
    p.add_argument("--eval-every", type=int, default=350, help="steps between validation runs (default 350)")
    p.add_argument("--sample-words", type=int, default=40, help="words to sample at the end (default 40)")
    p.add_argument("--seed", type=int, default=0, help="numpy seed for init and sampling (default 0)")
    p.add_argument("--data-dir", default=os.path.join("data", "kjv"), help="corpus folder (default data/kjv)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default cpu)")
    p.add_argument("--out", default="out", help="folder for the checkpoint (default out)")
    args = p.parse_args(argv)
    for name in ("steps", "batch_size", "bptt", "embedding", "hidden", "layers", "eval_every"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not (args.lr > 0 and args.clip > 0 and args.minutes > 0):
        raise UsageError("--lr, --clip and --minutes must be positive")
    return args


def detach(h):
    return tuple(t.detach() for t in h) if isinstance(h, tuple) else h.detach()


def load_corpus(args, device):
    """(Corpus, batchified training ids, batchified validation ids) of the KJV splits."""
    import needle as ndl
    import needle.data  # noqa: F401

    try:
        base = ndl.data.kjv_corpus(args.data_dir)
    except RuntimeError as e:
        raise UsageError(str(e)) from None
    corpus = ndl.data.Corpus(base)
    train = ndl.data.batchify(corpus.train, args.batch_size, device, "float32")
    valid = ndl.data.batchify(corpus.valid, 10, device, "float32")
    return corpus, train, valid


def evaluate(model, data, bptt, device):
    """The mean next-token cross-entropy of ``model`` over batchified ``data``."""
    import needle as ndl

    model.eval()
    loss_fn = ndl.nn.SoftmaxLoss()
    total, count, h = 0.0, 0, None
    with no_grad():
        for i in range(0, data.shape[0] - 1, bptt):
            X, y = ndl.data.get_batch(data, i, bptt, device=device, dtype="float32")
            logits, h = model(X, h)
            total += float(loss_fn(logits, y).numpy()) * y.shape[0]
            count += y.shape[0]
    model.train()
    return total / count


def train_steps(model, train, args, device, bar=None, valid=None):
    """Trains ``model`` on batchified ``train`` for ``args.steps`` windows of ``args.bptt``
    rows or ``args.minutes``, whichever ends first (SGD, lr decayed linearly from args.lr to
    a tenth of it, gradient norm clipped to args.clip, the state carried across windows,
    detached). Reports to ``bar`` (a Progress) and, every ``args.eval_every`` steps, the
    perplexity on ``valid``. Returns the number of steps taken."""
    import needle as ndl

    opt = ndl.optim.SGD(model.parameters(), lr=args.lr)
    loss_fn = ndl.nn.SoftmaxLoss()
    step, running, start = 0, None, time.perf_counter()
    deadline = start + 60 * args.minutes
    while step < args.steps and time.perf_counter() < deadline:
        h = None  # each pass over the text starts from a fresh state
        for i in range(0, train.shape[0] - 1, args.bptt):
            if step >= args.steps or time.perf_counter() >= deadline:
                break
            opt.lr = args.lr * (1 - 0.9 * step / args.steps)
            X, y = ndl.data.get_batch(train, i, args.bptt, device=device, dtype="float32")
            logits, h = model(X, h)
            h = detach(h)
            loss = loss_fn(logits, y)
            opt.reset_grad()
            loss.backward()
            opt.clip_grad_norm(args.clip)
            opt.step()
            step += 1
            if bar is not None:
                value = float(loss.numpy())
                running = value if running is None else 0.95 * running + 0.05 * value
                rate = step * X.shape[0] * X.shape[1] / (time.perf_counter() - start)
                bar.update(step, f"loss {running:.3f} (ppl {math.exp(running):.0f}), {rate:,.0f} tok/s")
            if valid is not None and step % args.eval_every == 0 and step < args.steps:
                if bar is not None:
                    bar.close()
                print(f"step {step}: validation perplexity {math.exp(evaluate(model, valid, args.bptt, device)):.1f}",
                      flush=True)
    return step


def sample(model, dictionary, prompt, n_words, device, temperature=0.8):
    """``prompt`` continued by ``n_words`` words drawn from the model's softmax / temperature."""
    import needle as ndl

    model.eval()
    unk = dictionary.word2idx.get("<unk>")
    ids = [dictionary.word2idx.get(w, unk) for w in prompt.split()]
    words, h = prompt.split(), None
    with no_grad():
        x = ids
        for _ in range(n_words):
            X = ndl.Tensor(np.array(x, dtype=np.float32).reshape(-1, 1), device=device)
            logits, h = model(X, h)
            z = logits.numpy()[-1].astype(np.float64) / temperature
            p = np.exp(z - z.max())
            if unk is not None:
                p[unk] = 0.0  # never sample the unknown-word token
            nxt = int(np.random.choice(len(p), p=p / p.sum()))
            words.append(dictionary.idx2word[nxt])
            x = [nxt]
    model.train()
    return " ".join(words).replace(" <eos> ", "\n").replace(" <eos>", "")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import needle as ndl
    import needle.data
    import needle.nn
    import needle.optim
    from needle.apps.models import LanguageModel

    device = get_device(args.device)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create --out folder {args.out}: {e.strerror}") from None
    t0 = time.perf_counter()
    corpus, train, valid = load_corpus(args, device)
    vocab = len(corpus.dictionary)
    print(f"data: King James Bible from {args.data_dir}: {len(corpus.train):,} training and "
          f"{len(corpus.valid):,} validation tokens, vocabulary {vocab:,} ({time.perf_counter() - t0:.1f} s)")

    np.random.seed(args.seed)
    model = LanguageModel(args.embedding, vocab, args.hidden, args.layers, seq_model="lstm", device=device)
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    windows = (train.shape[0] - 1 + args.bptt - 1) // args.bptt
    print(f"model: LSTM language model, embedding {args.embedding}, {args.layers} x {args.hidden} hidden, "
          f"{n_params:,} parameters, device {args.device}")
    print(f"training: up to {args.steps} windows of {args.bptt} x {args.batch_size} tokens "
          f"({args.steps / windows:.2f} epochs) or {args.minutes:g} min, SGD lr {args.lr:g} -> "
          f"{args.lr / 10:g}, clip {args.clip:g}")

    bar = Progress(args.steps, "train")
    t_train = time.perf_counter()
    step = train_steps(model, train, args, device, bar, valid)
    bar.close()
    train_time = time.perf_counter() - t_train
    valid_ppl = math.exp(evaluate(model, valid, args.bptt, device))
    ckpt = os.path.join(args.out, "lstm_lm_kjv.safetensors")
    ndl.save(model.state_dict(), ckpt)
    print(f"trained {step} steps in {train_time:.1f} s; checkpoint: {ckpt}")
    print(f"sample: {sample(model, corpus.dictionary, PROMPT, args.sample_words, device)}")
    print(f"validation perplexity: {valid_ppl:.1f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
