"""What a model is: the mixer contract, the mixers, the backbone, accounting and size matching."""

from . import attention, linear_attention, mamba, sliding_window  # noqa: F401  (importing registers the mixers)
from .attention import Attention
from .kv_policy import KVPolicy, KVSchedule, parse_kv_policy, set_kv_policy
from .linear_attention import LinearAttention
from .mamba import Mamba
from .mixer import MIXERS, Mixer, State, get_mixer, register
from .model import (
    LanguageModel,
    LayerSpec,
    MixerFactory,
    ModelConfig,
    mixer_from_spec,
    mixer_to_spec,
    pattern_name,
    preset,
)
from .rope import RopeScaling, rotary, set_rope_scaling
from .sizing import match_params, match_width, non_embedding_params
from .sliding_window import SlidingWindow


def no_weight_decay(name: str, param) -> bool:
    """Whether an optimiser should exempt this parameter from weight decay (norms, biases, A_log, D)."""
    return param.ndim < 2 or getattr(param, "_no_weight_decay", False)


__all__ = [
    "MIXERS", "Attention", "KVPolicy", "KVSchedule", "LanguageModel", "LayerSpec", "LinearAttention", "Mamba", "Mixer",
    "MixerFactory", "ModelConfig", "RopeScaling", "SlidingWindow", "State", "get_mixer", "match_params", "match_width",
    "mixer_from_spec", "mixer_to_spec", "no_weight_decay", "non_embedding_params", "parse_kv_policy", "pattern_name",
    "preset", "register", "rotary", "set_kv_policy", "set_rope_scaling",
]
