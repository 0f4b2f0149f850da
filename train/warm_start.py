"""Start a run from another run's trained weights (fine-tuning, a length warm-up): the model only, the rest fresh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqmix.archs import ModelConfig


def load_weights(model: nn.Module, config: ModelConfig, path: str | Path) -> None:
    """Copy the model weights of the seqmix checkpoint at `path` into `model`, whose config must equal the checkpoint's.

    Optimiser state, schedule, step count and data position are not taken (that is `--ckpt_path`, resuming a run)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"init_from={str(path)!r} is not a file; give the .ckpt of a finished `seqmix fit` run")
    try:
        raw: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
        saved, weights = raw["hyper_parameters"]["model"], raw["state_dict"]
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise ValueError(f"init_from={str(path)!r} is not a seqmix checkpoint ({type(err).__name__}: {err})") from None
    ours = config.to_dict()
    if saved != ours:
        diff = sorted(k for k in set(saved) | set(ours) if saved.get(k) != ours.get(k))
        shown = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs this run {ours.get(k)!r}" for k in diff)
        raise ValueError(f"init_from={str(path)!r} holds another model ({shown}); build the same model to start from it")
    prefix = "model."
    model.load_state_dict({k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)})
