"""Bare training step side by side: attention against Mamba (today's torch scan and the auto-chosen one), no Lightning.

python -m seqmix.train.tools.bench.step [--seq-len 32] [--batch 32] [--params 100000] [--threads 1] [--repeats 15]

Forward, cross-entropy, backward and AdamW at `seqmix compare`'s defaults (2 layers, vocab 64, 2 heads, 100k
non-embedding parameters); the arms run interleaved, one step each per round, so a change in machine load hits
every arm alike; prints the median step time, tokens/s and each arm's ratio to attention.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from seqmix import archs, kernels

ARMS = {
    "attention": ("attention", {"n_heads": 2}),
    "mamba[torch scan]": ("mamba", {"scan_backend": "torch"}),
    "mamba[auto]": ("mamba", {}),
}


def measure(seq_len: int, batch: int, params: int, n_layers: int, vocab: int, repeats: int) -> dict[str, dict]:
    """Median step seconds and tokens/s of every arm, measured in interleaved rounds."""
    models = {}
    for label, (name, args) in ARMS.items():
        config = archs.match_params(archs.ModelConfig(mixer=name, n_layers=n_layers, vocab_size=vocab, mixer_args=args), params)
        torch.manual_seed(0)
        model = archs.LanguageModel(config)
        models[label] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3), archs.non_embedding_params(config))
    tokens = torch.randint(0, vocab, (batch, seq_len + 1), generator=torch.Generator().manual_seed(0))

    def step(model, opt) -> None:
        logits = model(tokens[:, :-1])  # (batch, L, vocab)
        loss = F.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for model, opt, _ in models.values():
        step(model, opt)  # warm-up (the fused CPU scan builds here on a first run)
    times: dict[str, list[float]] = {label: [] for label in models}
    for _ in range(repeats):
        for label, (model, opt, _) in models.items():
            start = time.perf_counter()
            step(model, opt)
            times[label].append(time.perf_counter() - start)
    return {
        label: dict(params=models[label][2], step_s=statistics.median(t), tokens_per_s=batch * seq_len / statistics.median(t))
        for label, t in times.items()
    }


def main(argv: Sequence[str] | None = None) -> dict[str, dict]:
    p = argparse.ArgumentParser(prog="python -m seqmix.train.tools.bench.step", description=__doc__.splitlines()[0])
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--params", type=int, default=100_000, help="non-embedding parameter budget of every arm")
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--vocab-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=15, help="interleaved rounds; the median is reported")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1: steadier on shared cores)")
    args = p.parse_args(argv)
    for name in ("seq_len", "batch", "params", "n_layers", "vocab_size", "repeats", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be a positive integer")
    torch.set_num_threads(args.threads)
    rows = measure(args.seq_len, args.batch, args.params, args.n_layers, args.vocab_size, args.repeats)
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(
        f"training step, L={args.seq_len} batch={args.batch}, {args.threads} thread(s){load}; "
        f"Mamba's auto scan backend on CPU: {kernels.resolve_backend('auto', 'cpu')}"
    )
    base = rows["attention"]["step_s"]
    for label, r in rows.items():
        print(
            f"  {label:<18} {r['params']:>9,} params  {1e3 * r['step_s']:8.1f} ms  {r['tokens_per_s'] / 1e3:7.1f}k tok/s  "
            f"{base / r['step_s']:.2f}x attention"
        )
    return rows


if __name__ == "__main__":
    main()
