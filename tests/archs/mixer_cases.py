"""Every mixer defined under archs/, plus the option variants whose forward takes another code path.

The mixers are found in the source (each ``@register`` class's ``name = "..."``), not read back from MIXERS, so
`test_every_registered_mixer_is_covered` fails for a mixer registered from outside archs/ and
`test_every_mixer_file_is_registered` for a mixer file that `archs/__init__.py` forgets to import."""

import ast
from pathlib import Path

from seqmix.archs import MIXERS

ARCHS = Path(__file__).resolve().parents[2] / "archs"


def defined_mixers(folder: Path = ARCHS) -> dict[str, str]:
    """Registry name -> file, for every class decorated with @register in folder/*.py."""
    found = {}
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            decorated = isinstance(node, ast.ClassDef) and any(
                isinstance(d, ast.Name) and d.id == "register" for d in node.decorator_list)
            if not decorated:
                continue
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign):
                    targets = [stmt.target]
                else:
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else []
                if any(isinstance(t, ast.Name) and t.id == "name" for t in targets) and isinstance(stmt.value, ast.Constant):
                    found[stmt.value.value] = path.name
    return found


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
    "mamba_lti": ("mamba", {"selective": False, "d_state": 4}),
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

CASES = {name: (name, {}) for name in defined_mixers()} | VARIANTS


def build(case: str, d_model: int):
    """A fresh mixer for a case name."""
    name, kwargs = CASES[case]
    return MIXERS[name](d_model, **kwargs)
