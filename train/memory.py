"""Whether a model fits this machine's memory, checked before it is built."""

from __future__ import annotations

import os

from lightning.pytorch.utilities import rank_zero_warn

from seqmix import archs
from seqmix.archs import ModelConfig


def physical_memory() -> int | None:
    """This machine's physical memory in bytes, where the OS says."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_model_fits(config: ModelConfig, param_budget: int | None, memory: int | None = None) -> None:
    """Raise a ValueError naming what to lower when the model's fp32 weights alone exceed physical memory (it could
    not even be built); warn when training it with AdamW (weights, gradients, two moments: 16 bytes a parameter) would."""
    memory = physical_memory() if memory is None else memory
    if not memory:
        return
    params = archs.non_embedding_params(config) + config.vocab_size * config.d_model
    cause = (f"param_budget={param_budget:,}" if param_budget is not None
             else f"d_model={config.d_model}, n_layers={config.n_layers}, vocab_size={config.vocab_size}")
    size = f"{params:,} parameters ({params * 4 / 2**30:,.1f} GiB in fp32)"
    if 4 * params > memory:
        raise ValueError(f"{cause} gives a model of {size}, more than this machine's {memory / 2**30:,.1f} GiB of "
                         f"memory; lower {cause.split('=')[0]}")
    if 16 * params > memory:
        rank_zero_warn(f"{cause} gives a model of {size}; training it with AdamW takes about "
                       f"{16 * params / 2**30:,.1f} GiB, more than this machine's {memory / 2**30:,.1f} GiB")
