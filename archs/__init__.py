"""What a model is: the mixer contract, the mixers, the backbone, accounting and size matching."""

from . import (  # noqa: F401  (importing registers the mixers)
    attention,
    deltanet,
    gated_deltanet,
    gla,
    linear_attention,
    mamba,
    mamba2,
    retnet,
    sliding_window,
)
from .attention import Attention
from .deltanet import DeltaNet
from .gated_deltanet import GatedDeltaNet
from .gla import GLA
from .kv_policy import KVPolicy, KVSchedule, parse_kv_policy, set_kv_policy
from .linear_attention import LinearAttention
from .mamba import Mamba
from .mamba2 import Mamba2
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
from .regression import RegressionModel
from .retnet import RetNet
from .rope import RopeScaling, rotary, set_rope_scaling
from .sizing import match_params, match_width, model_summary, non_embedding_params
from .sliding_window import SlidingWindow


def no_weight_decay(name: str, param) -> bool:
    """Whether an optimiser should exempt this parameter from weight decay (norms, biases, A_log, D)."""
    return param.ndim < 2 or getattr(param, "_no_weight_decay", False)


__all__ = [
    "GLA", "MIXERS", "Attention", "DeltaNet", "GatedDeltaNet", "KVPolicy", "KVSchedule", "LanguageModel", "LayerSpec",
    "LinearAttention", "Mamba", "Mamba2", "Mixer", "MixerFactory", "ModelConfig", "RegressionModel", "RetNet", "RopeScaling",
    "SlidingWindow", "State", "get_mixer", "match_params", "match_width", "mixer_from_spec", "mixer_to_spec", "no_weight_decay",
    "model_summary", "non_embedding_params", "parse_kv_policy", "pattern_name", "preset", "register", "rotary", "set_kv_policy",
    "set_rope_scaling",
]
