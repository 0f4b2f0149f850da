"""Every registered mixer, plus the option variants whose forward takes another code path."""

from seqmix.archs import MIXERS

VARIANTS = {
    "attention_explicit": ("attention", {"impl": "explicit"}),
    "attention_nope": ("attention", {"position": "none"}),
    "attention_alibi": ("attention", {"position": "alibi"}),
    "attention_alibi_mqa_explicit": ("attention", {"position": "alibi", "n_heads": 2, "n_kv_heads": 1, "impl": "explicit"}),
    "attention_gqa": ("attention", {"n_heads": 4, "n_kv_heads": 2}),
    "attention_mqa_explicit": ("attention", {"n_heads": 4, "n_kv_heads": 1, "impl": "explicit"}),
    "sliding_window_w5": ("sliding_window", {"window": 5}),
    "sliding_window_w4_sinks2_gqa": ("sliding_window", {"window": 4, "n_sinks": 2, "n_kv_heads": 2}),
    "sliding_window_w1_sinks3_alibi_mqa": ("sliding_window", {"window": 1, "n_sinks": 3, "position": "alibi", "n_kv_heads": 1}),
    "sliding_window_w7_nope": ("sliding_window", {"window": 7, "position": "none"}),
    "linear_attention_identity": ("linear_attention", {"feature_map": "identity", "normalize": False}),
    "linear_attention_relu_chunk5": ("linear_attention", {"feature_map": "relu", "chunk_size": 5}),
    "mamba_dstate1_conv2": ("mamba", {"d_state": 1, "d_conv": 2, "expand": 1}),
}

CASES = {name: (name, {}) for name in MIXERS} | VARIANTS


def build(case: str, d_model: int):
    """A fresh mixer for a case name."""
    name, kwargs = CASES[case]
    return MIXERS[name](d_model, **kwargs)
