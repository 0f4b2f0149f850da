"""What a model is: the mixer contract, the mixers, the backbone, accounting and size matching."""

from . import attention, deltanet, gated_deltanet, gla, linear_attention, mamba, mamba2, retnet  # noqa: F401  (registers)
from .attention import Attention
from .deltanet import DeltaNet
from .gated_deltanet import GatedDeltaNet
from .gla import GLA
from .linear_attention import LinearAttention
from .mamba import Mamba
from .mamba2 import Mamba2
from .mixer import MIXERS, Mixer, State, get_mixer, register
from .model import LanguageModel, MixerFactory, ModelConfig, preset
from .retnet import RetNet
from .sizing import match_params, match_width, non_embedding_params


def no_weight_decay(name: str, param) -> bool:
    """Whether an optimiser should exempt this parameter from weight decay (norms, biases, A_log, D)."""
    return param.ndim < 2 or getattr(param, "_no_weight_decay", False)


__all__ = [
    "GLA", "MIXERS", "Attention", "DeltaNet", "GatedDeltaNet", "LanguageModel", "LinearAttention", "Mamba", "Mamba2",
    "Mixer", "MixerFactory", "ModelConfig", "RetNet", "State", "get_mixer", "match_params", "match_width", "no_weight_decay",
    "non_embedding_params", "preset", "register",
]
