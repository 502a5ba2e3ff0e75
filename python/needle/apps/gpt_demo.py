"""Needle's GPT job: a small GPT on the King James Bible with a byte-level BPE tokenizer.

    python -m needle.apps.gpt_demo [--minutes M] [--steps N] [--batch-size B]
                                   [--block-size T] [--layers L] [--heads H] [--embd E]
                                   [--vocab-size V] [--lr LR] [--prompt TEXT]
                                   [--sample-tokens N] [--temperature K] [--top-k K]
                                   [--sample-only] [--device cpu|cuda] [--out DIR]

Reads Debian's bible-kjv (``needle.data.kjv_verses``; every 20th verse is validation
text, as in the LSTM job), trains a ``BPETokenizer`` of --vocab-size tokens on the
training verses, and trains ``needle.apps.models.GPT`` on windows of --block-size
tokens (``TextDataset``) with AdamW, warm-up and cosine decay, for --steps steps or
--minutes, whichever ends first. It reports the validation loss in nats per token and
in bits per byte of text (comparable across tokenizers), saves the weights, the
tokenizer and the configuration into --out, and prints text sampled after --prompt
with the KV cache. ``--sample-only`` skips training and samples from the checkpoint in
--out. The last line is ``validation loss: X nats/token, Y bits/byte``.
"""
import json
import math
import os
import sys
import time

import numpy as np

from needle.apps.demo import Progress, UsageError, _Parser, get_device, no_grad, run_cli

PROMPT = "In the beginning"
CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "gpt_kjv.json", "gpt_kjv.safetensors", "gpt_kjv_tokenizer.bpe"


def parse_args(argv):
    p = _Parser(prog="python -m needle.apps.gpt_demo",
                description="Train a small GPT on the King James Bible with needle.")
    p.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    p.add_argument("--minutes", type=float, default=8.0, help="stop training after this long (default 8)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per step (default 16)")
    p.add_argument("--block-size", type=int, default=128, help="tokens per window (default 128)")
    p.add_argument("--layers", type=int, default=4, help="transformer blocks (default 4)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    p.add_argument("--embd", type=int, default=128, help="model width (default 128)")
    p.add_argument("--vocab-size", type=int, default=2048, help="BPE vocabulary (default 2048)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (default 2e-3)")
    p.add_argument("--eval-every", type=int, default=500, help="steps between validation runs (default 500)")
    p.add_argument("--prompt", default=PROMPT, help=f"text to continue (default {PROMPT!r})")
    p.add_argument("--sample-tokens", type=int, default=80, help="tokens to sample (default 80)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature, 0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=40, help="sample among the k most likely tokens (default 40)")
    p.add_argument("--sample-only", action="store_true", help="load the checkpoint in --out and sample")
    p.add_argument("--seed", type=int, default=0, help="numpy seed for init, batches and sampling (default 0)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default cpu)")
    p.add_argument("--out", default="out", help="folder for the checkpoint (default out)")
    args = p.parse_args(argv)
    for name in ("steps", "batch_size", "block_size", "layers", "heads", "embd", "eval_every",
                 "top_k"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.embd % args.heads:
        raise UsageError(f"--embd {args.embd} must be a multiple of --heads {args.heads}")
    if args.vocab_size < 257:
        raise UsageError(f"--vocab-size must be at least 257 (256 bytes and a merge), got {args.vocab_size}")
    if not (args.lr > 0 and args.minutes > 0 and args.temperature >= 0 and args.sample_tokens >= 0):
        raise UsageError("--lr and --minutes must be positive, --temperature and --sample-tokens >= 0")
    if not args.prompt:
        raise UsageError("--prompt must not be empty")
    return args


def load_text():
    """(training text, validation text) of the KJV, one verse per line."""
    import needle.data as data

    try:
        train, valid, _ = data.kjv_splits(data.kjv_verses())
    except RuntimeError as e:
        raise UsageError(str(e)) from None
    return "\n".join(train) + "\n", "\n".join(valid) + "\n"


def evaluate(model, ids, block_size, device, batch_size=32):
    """(mean next-token loss in nats, tokens scored) over the windows tiling ``ids``."""
    import needle as ndl

    dataset = ndl.data.TextDataset(ids, block_size)
    loss_fn = ndl.nn.SoftmaxLoss()
    model.eval()
    total, count = 0.0, 0
    with no_grad():
        for start in range(0, len(dataset), batch_size):
            x, y = dataset[np.arange(start, min(start + batch_size, len(dataset)))]
            logits = model(ndl.Tensor(x, device=device))
            n = y.size
            total += float(loss_fn(logits.reshape((n, model.vocab_size)),
                                   ndl.Tensor(y.reshape(n), device=device)).numpy()) * n
            count += n
    model.train()
    return total / count, count


def train(model, train_ids, valid_ids, args, device):
    """AdamW with warm-up and cosine decay on shuffled windows; returns the steps taken."""
    import needle as ndl

    loader = ndl.data.DataLoader(ndl.data.TextDataset(train_ids, args.block_size), args.batch_size,
                                 shuffle=True, device=device)
    opt = ndl.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    sched = ndl.optim.CosineWarmupLR(opt, warmup_steps=min(100, args.steps // 10), total_steps=args.steps)
    loss_fn = ndl.nn.SoftmaxLoss()
    bar = Progress(args.steps, "train")
    step, running, start = 0, None, time.perf_counter()
    deadline = start + 60 * args.minutes
    while step < args.steps and time.perf_counter() < deadline:
        for x, y in loader:
            if step >= args.steps or time.perf_counter() >= deadline:
                break
            logits = model(x)
            n = y.shape[0] * y.shape[1]
            loss = loss_fn(logits.reshape((n, model.vocab_size)), y.reshape((n,)))
            opt.reset_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            value = float(loss.numpy())
            running = value if running is None else 0.95 * running + 0.05 * value
            rate = step * n / (time.perf_counter() - start)
            bar.update(step, f"loss {running:.3f}, {rate:,.0f} tok/s")
            if step % args.eval_every == 0 and step < args.steps:
                bar.close()
                print(f"step {step}: validation loss {evaluate(model, valid_ids, args.block_size, device)[0]:.3f} "
                      "nats/token", flush=True)
    bar.close()
    return step


def continue_text(model, tokenizer, prompt, args, device):
    """``prompt`` continued by ``args.sample_tokens`` tokens from the cached generator."""
    import needle as ndl

    ids = tokenizer.encode(prompt)[-model.block_size:]
    out = model.generate(ndl.Tensor(np.array([ids], dtype=np.int64), device=device),
                         args.sample_tokens, temperature=args.temperature, top_k=args.top_k)
    return tokenizer.decode(out.numpy()[0].tolist())


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import needle as ndl
    import needle.data
    import needle.nn
    import needle.optim
    from needle.apps.models import GPT

    device = get_device(args.device)
    paths = {name: os.path.join(args.out, f) for name, f in
             (("config", CONFIG_FILE), ("weights", WEIGHTS_FILE), ("tokenizer", TOKENIZER_FILE))}
    np.random.seed(args.seed)

    if args.sample_only:
        missing = [p for p in paths.values() if not os.path.exists(p)]
        if missing:
            raise UsageError(f"--sample-only needs a trained checkpoint; missing {', '.join(missing)}")
        with open(paths["config"]) as f:
            config = json.load(f)
        tokenizer = ndl.data.BPETokenizer.load(paths["tokenizer"])
        model = GPT(**config, device=device)
        model.load_state_dict(ndl.load(paths["weights"]))
        print(f"sample: {continue_text(model, tokenizer, args.prompt, args, device)}")
        return 0

    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create --out folder {args.out}: {e.strerror}") from None
    t0 = time.perf_counter()
    train_text, valid_text = load_text()
    tokenizer = ndl.data.BPETokenizer()
    tokenizer.train(train_text, args.vocab_size)
    train_ids = np.array(tokenizer.encode(train_text), dtype=np.int64)
    valid_ids = np.array(tokenizer.encode(valid_text), dtype=np.int64)
    print(f"data: King James Bible, {len(train_text.encode()):,} training and {len(valid_text.encode()):,} "
          f"validation bytes; BPE vocabulary {tokenizer.vocab_size:,}: {len(train_ids):,} and "
          f"{len(valid_ids):,} tokens ({time.perf_counter() - t0:.1f} s)")

    config = dict(vocab_size=tokenizer.vocab_size, block_size=args.block_size, n_layer=args.layers,
                  n_head=args.heads, n_embd=args.embd)
    model = GPT(**config, device=device)
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    print(f"model: GPT, {args.layers} layers x {args.heads} heads, width {args.embd}, context "
          f"{args.block_size}, {n_params:,} parameters, device {args.device}")
    print(f"training: up to {args.steps} steps of {args.batch_size} x {args.block_size} tokens or "
          f"{args.minutes:g} min, AdamW lr {args.lr:g} (warm-up, cosine decay)")
    t_train = time.perf_counter()
    step = train(model, train_ids, valid_ids, args, device)
    train_time = time.perf_counter() - t_train

    loss, scored = evaluate(model, valid_ids, args.block_size, device)
    scored_bytes = len(tokenizer.decode_bytes(valid_ids[1:scored + 1].tolist()))
    bits_per_byte = loss * scored / (math.log(2) * scored_bytes)
    ndl.save(model.state_dict(), paths["weights"])
    tokenizer.save(paths["tokenizer"])
    with open(paths["config"], "w") as f:
        json.dump(config, f)
    print(f"trained {step} steps in {train_time:.1f} s; checkpoint: {paths['weights']} "
          f"(+ {TOKENIZER_FILE}, {CONFIG_FILE}; resample with --sample-only)")
    print(f"sample: {continue_text(model, tokenizer, args.prompt, args, device)}")
    print(f"validation loss: {loss:.3f} nats/token, {bits_per_byte:.3f} bits/byte")
    return 0


if __name__ == "__main__":
    run_cli(main)
