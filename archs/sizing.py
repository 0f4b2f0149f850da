"""Size models to a parameter budget (or to one width) so that mixers are compared at matched size."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from .model import LanguageModel, ModelConfig


def non_embedding_params(config: ModelConfig) -> int:
    """Parameters outside the (tied) embedding, analytically, without allocating the model."""
    with torch.device("meta"):
        return LanguageModel(config).param_count(embedding=False)


def model_summary(config: ModelConfig, model: LanguageModel | None = None) -> dict[str, Any]:
    """The resolved model, flat: mixer name, widths, vocabulary and parameter counts (the tied embedding once).

    Counts come from `model` when it is built, else analytically from `config` (nothing allocated)."""
    non_embedding = model.param_count(embedding=False) if model is not None else non_embedding_params(config)
    return {
        "mixer_name": config.mixer_name, "d_model": config.d_model, "d_ff": config.hidden, "n_layers": config.n_layers,
        "vocab_size": config.vocab_size, "params_total": non_embedding + config.vocab_size * config.d_model,
        "params_non_embedding": non_embedding,
    }


def _build_every_mixer(config: ModelConfig) -> None:
    """Build one layer of each distinct spec in the pattern on the meta device (raises if any rejects the width)."""
    specs = config.layers if config.layers is not None else [config.mixer]
    with torch.device("meta"):
        for i in range(len(specs)):
            config.make_mixer(i)


def _valid_width_at_most(config: ModelConfig, d_model: int, search: int = 512) -> int | None:
    """The largest width <= d_model that every layer's mixer accepts (e.g. divisible by its heads), if any near it."""
    for d in range(d_model, max(0, d_model - search), -1):
        try:
            _build_every_mixer(replace(config, d_model=d, d_ff=None))
        except ValueError:
            continue
        return d
    return None


def match_params(config: ModelConfig, target: int, tolerance: float = 0.02, max_width: int = 65536) -> ModelConfig:
    """Resize config to about `target` non-embedding parameters: the widest d_model every layer accepts that fits,
    then the MLP's hidden width to close the gap. Raises if the result is off by more than `tolerance`."""
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise ValueError(f"target must be a positive integer parameter count, got {target!r}")
    if _valid_width_at_most(config, 512) is None:  # the options, not the width, are wrong (e.g. d_state=0)
        try:
            _build_every_mixer(replace(config, d_model=512, d_ff=None))
        except ValueError as err:
            raise ValueError(f"mixer {config.mixer_name!r} accepts no width up to 512 with these options: {err}") from None

    def fits(d: int) -> bool:
        w = _valid_width_at_most(config, d)
        return w is None or non_embedding_params(replace(config, d_model=w, d_ff=None)) <= target

    lo, hi = 1, max_width
    while lo < hi:  # the largest d whose nearest accepted width fits the budget
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    width = _valid_width_at_most(config, lo)
    if width is None:
        raise ValueError(f"no width up to {lo} is accepted by mixer {config.mixer_name!r} within {target:,} parameters")
    best = replace(config, d_model=width, d_ff=None)
    if best.hidden:  # every extra unit of MLP hidden width costs 2 * d_model per layer
        gap = target - non_embedding_params(best)
        best = replace(best, d_ff=max(1, best.hidden + round(gap / (2 * best.d_model * best.n_layers))))
    got = non_embedding_params(best)
    if abs(got - target) > tolerance * target:
        raise ValueError(
            f"cannot size mixer {best.mixer_name!r} to {target:,} non-embedding parameters within "
            f"{tolerance:.0%}: the nearest is {got:,} at d_model={best.d_model}"
            + ("" if best.hidden else "; with mlp_ratio=0 only d_model can move, so add an MLP or raise tolerance")
        )
    return best


def match_width(config: ModelConfig, d_model: int) -> ModelConfig:
    """The equal-width alternative: the same d_model (and default MLP) for every mixer."""
    return replace(config, d_model=d_model, d_ff=None)
