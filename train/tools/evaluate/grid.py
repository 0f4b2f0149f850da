"""The evaluation grid: score a model's argmax answers on fresh examples per (length, depth), pool cells into curves."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seqmix.archs import LanguageModel

from ...data import IGNORE_INDEX
from ...io import atomic_open
from .tasks import Task


@torch.no_grad()
def decode_logits(model: LanguageModel, inputs: Tensor, prefill_len: int = 1) -> Tensor:
    """Logits (B, L, V) of inputs (B, L) as a deployed model computes them: prefill the first prefill_len tokens in
    parallel, then feed the rest one at a time through step (so a KV policy decides what every later token sees)."""
    length = inputs.shape[1]
    p = min(max(1, prefill_len), length)
    logits, states = model.prefill(inputs[:, :p], max_len=length)  # (B, p, V)
    out = [logits]
    for t in range(p, length):
        logits_t, states = model.step(inputs[:, t], states)  # (B, V)
        out.append(logits_t[:, None])
    return torch.cat(out, dim=1)  # (B, L, V)


@torch.no_grad()
def score(
    model: LanguageModel, batch: dict[str, Tensor], batch_size: int, device: torch.device, prefill_len: int | None = None
) -> dict[str, int]:
    """Argmax predictions at the labelled positions: correct and total answer tokens, exact and total examples.

    prefill_len None scores the parallel forward; an int scores decode_logits (prefill that many tokens, step the rest).
    """
    correct = tokens = exact = 0
    for i in range(0, batch["input_ids"].shape[0], batch_size):
        inputs = batch["input_ids"][i : i + batch_size].to(device)
        labels = batch["labels"][i : i + batch_size].to(device)
        mask = labels != IGNORE_INDEX
        logits = model(inputs) if prefill_len is None else decode_logits(model, inputs, prefill_len)
        hit = (logits.argmax(-1) == labels) & mask
        correct, tokens = correct + int(hit.sum()), tokens + int(mask.sum())
        exact += int((hit.sum(1) == mask.sum(1)).sum())
    return {"correct": correct, "n_tokens": tokens, "exact": exact, "n_examples": batch["input_ids"].shape[0]}


def sweep(
    model: LanguageModel,
    task: Task,
    lengths: Sequence[int],
    depths: Sequence[float | None],
    num_examples: int,
    seed: int,
    batch_size: int,
    max_tokens: int,
    device: torch.device,
    log: Callable[[str], None] = lambda _: None,
    prefill_len: int | None = None,
) -> list[dict[str, Any]]:
    """One row per (length, depth): accuracy over answer tokens, exact match over examples, and the counts."""
    rows = []
    for length in lengths:
        for depth in depths:
            start = time.perf_counter()
            batch = task.sample(num_examples, length, depth, seed)
            s = score(model, batch, max(1, min(batch_size, max_tokens // length)), device, prefill_len)
            rows.append({
                "length": length, "depth": "" if depth is None else depth,
                "accuracy": s["correct"] / max(1, s["n_tokens"]), "exact_match": s["exact"] / s["n_examples"],
                "n_examples": s["n_examples"], "n_tokens": s["n_tokens"],
            })
            where = "" if depth is None else f" depth={depth:g}"
            log(f"  L={length}{where}: accuracy {rows[-1]['accuracy']:.3f} ({time.perf_counter() - start:.1f}s)")
    return rows


def length_curve(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Collapse a grid over depth: per length, accuracy over all answer tokens, exact match over all examples."""
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        acc = out.setdefault(r["length"], {"length": r["length"], "correct": 0, "exact": 0, "n_examples": 0, "n_tokens": 0})
        acc["correct"] += round(r["accuracy"] * r["n_tokens"])
        acc["exact"] += round(r["exact_match"] * r["n_examples"])
        acc["n_examples"] += r["n_examples"]
        acc["n_tokens"] += r["n_tokens"]
    return [
        {"length": a["length"], "accuracy": a["correct"] / max(1, a["n_tokens"]), "exact_match": a["exact"] / a["n_examples"],
         "n_examples": a["n_examples"], "n_tokens": a["n_tokens"]}
        for a in out.values()
    ]


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Tidy CSV, columns in the rows' order, written atomically."""
    with atomic_open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


