"""Every registered mixer, plus the option variants whose forward takes another code path."""

from seqmix.archs import MIXERS

VARIANTS = {
    "attention_explicit": ("attention", {"impl": "explicit"}),
    "attention_norope": ("attention", {"rope": False}),
    "linear_attention_identity": ("linear_attention", {"feature_map": "identity", "normalize": False}),
    "linear_attention_relu_chunk5": ("linear_attention", {"feature_map": "relu", "chunk_size": 5}),
    "mamba_dstate1_conv2": ("mamba", {"d_state": 1, "d_conv": 2, "expand": 1}),
    "mamba2_groups2_chunk5": ("mamba2", {"d_state": 8, "ngroups": 2, "chunk_size": 5}),
    "mamba2_mlp_half_silu_gate": ("mamba2", {"d_state": 4, "d_ssm": 8, "rmsnorm": False, "bias": True}),
    "mamba2_dhdim_normfirst_dtlimit_conv1": (
        "mamba2", {"d_state": 4, "D_has_hdim": True, "norm_before_gate": True, "dt_limit": (0.01, 0.05), "d_conv": 1},
    ),
    "retnet_nogate_chunk5": ("retnet", {"output_gate": False, "chunk_size": 5}),
    "gla_conv3_nogate_chunk5": ("gla", {"conv_size": 3, "output_gate": False, "chunk_size": 5}),
    "deltanet_noconv_gate_chunk5": ("deltanet", {"conv_size": None, "output_gate": True, "chunk_size": 5}),
    "gated_deltanet_noconv_chunk5": ("gated_deltanet", {"conv_size": None, "chunk_size": 5}),
}

CASES = {name: (name, {}) for name in MIXERS} | VARIANTS


def build(case: str, d_model: int):
    """A fresh mixer for a case name."""
    name, kwargs = CASES[case]
    return MIXERS[name](d_model, **kwargs)
