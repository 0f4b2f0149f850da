"""Our Mamba2 against mamba_ssm's official Mamba-2 block, same weights, fp32, on CPU.

What runs where. Official code, as shipped: the block's construction and init, its unfused forward
(`use_mem_eff_path=False`: in_proj, nn.Conv1d, SSD, gated RMSNorm, out_proj), its prefill into an inference cache
and its pure-PyTorch `step`. Official Triton kernels that do not run on CPU as shipped are swapped, in this process,
for the official PyTorch references: the SSD `mamba_chunk_scan_combined` for `ssd_selective_scan` (over
`selective_scan_ref`, plus `ssd_minimal_discrete` for the final state), the gated norm `RMSNormGated` for
`rms_norm_ref`. The fused route (`use_mem_eff_path=True`) calls `mamba_split_conv1d_scan_combined`, whose conv is the
causal_conv1d CUDA extension: it is compared through `mamba_split_conv1d_scan_ref` with `causal_conv1d_ref`.
The real Triton kernels (`mamba_chunk_scan_combined`, `RMSNormGated`, and `selective_state_update` for grouped
decode) run in a fresh process under TRITON_INTERPRET=1 in the slow test at the end (mamba2_triton_cases.py).
"""

from __future__ import annotations

import importlib.util
import math
import os
import types

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from seqmix.archs import LanguageModel, ModelConfig
from seqmix.archs.mamba2 import default_headdim

from ..interpreted import run_interpreted
from .mamba2_official import OPTION_CASES, import_official, official_ssm_state, perturbed_twin, twin

HERE = os.path.dirname(os.path.abspath(__file__))
# the official pure-PyTorch step takes ngroups == 1 only, breaks on D_has_hdim and does not clamp dt to dt_limit
DECODE_CASES = [c for c in OPTION_CASES if c[1].get("ngroups", 1) == 1 and not {"D_has_hdim", "dt_limit"} & set(c[1])]


def reference_chunk_scan(ssd, ssd_minimal_discrete):
    """mamba_chunk_scan_combined's semantics from the official references (no final state without the second)."""

    def chunk_scan(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, dt_softplus=False,
                   dt_limit=(0.0, float("inf")), return_final_states=False, seq_idx=None, cu_seqlens=None,
                   return_varlen_states=False):
        assert seq_idx is None and cu_seqlens is None and not return_varlen_states
        y = ssd.ssd_selective_scan(x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=dt_softplus, dt_limit=dt_limit)
        if not return_final_states:
            return y
        dt = dt + dt_bias if dt_bias is not None else dt  # the discretisation ssd_selective_scan applies, (B, L, H)
        dt = (F.softplus(dt) if dt_softplus else dt).clamp(*dt_limit)
        heads = x.shape[2] // B.shape[2]
        pad = (-x.shape[1]) % chunk_size  # padded tokens: dt*x = 0 and log decay 0 leave the state as it is
        X, dA, Bh, Ch = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (
            x * dt[..., None], dt * A, B.repeat_interleave(heads, dim=2), C.repeat_interleave(heads, dim=2)))
        _, final = ssd_minimal_discrete(X, dA, Bh, Ch, chunk_size)
        return y, final

    return chunk_scan


@pytest.fixture(scope="module")
def official():
    """The official mamba2 module, its Triton SSD and gated norm pointed at the official PyTorch references."""
    mamba2 = import_official()
    import mamba_ssm.ops.selective_scan_interface as scan_interface
    import mamba_ssm.ops.triton.ssd_combined as ssd
    from causal_conv1d.causal_conv1d_interface import causal_conv1d_ref
    from mamba_ssm.modules.ssd_minimal import ssd_minimal_discrete
    from mamba_ssm.ops.triton.layernorm_gated import rms_norm_ref

    def norm_ref(self, x, z=None):
        return rms_norm_ref(x, self.weight, self.bias, z=z, eps=self.eps, group_size=self.group_size,
                            norm_before_gate=self.norm_before_gate)

    def fused_ref(*args, seq_idx=None, **kwargs):  # the fused route's reference takes no seq_idx
        assert seq_idx is None
        return ssd.mamba_split_conv1d_scan_ref(*args, **kwargs)

    patches = [(mamba2, "mamba_chunk_scan_combined", reference_chunk_scan(ssd, ssd_minimal_discrete)),
               (mamba2, "mamba_split_conv1d_scan_combined", fused_ref),
               (ssd, "causal_conv1d_fn", causal_conv1d_ref),
               (ssd, "rmsnorm_fn", lambda x, w, b, z=None, eps=1e-6, group_size=None, norm_before_gate=True:
                   rms_norm_ref(x, w, b, z=z, eps=eps, group_size=group_size, norm_before_gate=norm_before_gate)),
               (mamba2, "selective_state_update", None),  # the official pure-PyTorch step (ngroups == 1)
               (scan_interface, "selective_scan_fn", scan_interface.selective_scan_ref),
               (mamba2.RMSNormGated, "forward", norm_ref)]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, value in patches:
        setattr(owner, name, value)
    yield mamba2
    for owner, name, value in saved:
        setattr(owner, name, value)


@pytest.mark.parametrize("d_model, kwargs, length", OPTION_CASES, ids=str)
def test_initial_weights_are_the_officials_from_one_seed(official, d_model, kwargs, length):
    ours, _ = twin(official, d_model, seed=3, **kwargs)
    torch.manual_seed(3)
    theirs = official.Mamba2(d_model, **{**kwargs, "headdim": ours.headdim})
    for name, want in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], want, rtol=0, atol=0, msg=name)
    assert (ours.nheads, ours.d_ssm, ours.d_inner) == (theirs.nheads, theirs.d_ssm, theirs.d_inner)


@pytest.mark.parametrize("d_model, kwargs, length", OPTION_CASES, ids=str)
def test_forward_matches_official(official, d_model, kwargs, length):
    ours, theirs = perturbed_twin(official, d_model, **kwargs)
    x = torch.randn(2, length, d_model)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("d_model, kwargs, length", OPTION_CASES[:3], ids=str)
def test_gradients_match_official(official, d_model, kwargs, length):
    ours, theirs = perturbed_twin(official, d_model, **kwargs)
    x = torch.randn(2, length, d_model)
    for m in (ours, theirs):
        m(x).square().sum().backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


# the fused reference, mamba_split_conv1d_scan_ref, norms the whole d_ssm (no group_size), where the module's unfused
# path and its fused CUDA kernel norm per group: only ngroups == 1 is the same block; it also has no gated-MLP half
FUSED_CASES = [c for c in OPTION_CASES if c[1].get("ngroups", 1) == 1 and "d_ssm" not in c[1]]


@pytest.mark.parametrize("d_model, kwargs, length", FUSED_CASES, ids=str)
def test_forward_matches_the_official_fused_route(official, d_model, kwargs, length):
    ours, theirs = perturbed_twin(official, d_model, **kwargs)
    theirs.use_mem_eff_path = True  # mamba_split_conv1d_scan_combined, pointed at its official reference
    x = torch.randn(2, length, d_model)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("d_model, kwargs, length", DECODE_CASES, ids=str)
@pytest.mark.parametrize("split", [1, 6])
def test_prefill_and_decode_match_official(official, d_model, kwargs, length, split):
    ours, theirs = twin(official, d_model, **kwargs)
    x = torch.randn(2, length, d_model)
    cache = types.SimpleNamespace(seqlen_offset=0, key_value_memory_dict={})
    want = theirs(x[:, :split], inference_params=cache)  # the official prefill fills conv and SSM states
    got, state = ours.prefill(x[:, :split])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    conv_state, ssm_state = cache.key_value_memory_dict[0]
    torch.testing.assert_close(state["conv"], conv_state[..., 1:], rtol=0, atol=0)
    torch.testing.assert_close(official_ssm_state(state), ssm_state, rtol=1e-5, atol=1e-5)
    for t in range(split, length):
        want, conv_state, ssm_state = theirs.step(x[:, t : t + 1], conv_state, ssm_state)
        got, state = ours.step(x[:, t], state)
        torch.testing.assert_close(got, want[:, 0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(official_ssm_state(state), ssm_state, rtol=1e-5, atol=1e-5)


def test_init_survives_the_backbone_and_skips_weight_decay():
    from seqmix.archs import no_weight_decay

    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(mixer="mamba2", d_model=64, n_layers=3, mixer_args={"d_state": 8}))
    for block in model.blocks:
        m = block.mixer
        assert m.nheads == 2 and m.headdim == 64
        A = torch.exp(m.A_log)
        assert A.min() >= 1 and A.max() <= 16 and m.A_log.dtype == torch.float32
        torch.testing.assert_close(m.D, torch.ones(2))
        dt = F.softplus(m.dt_bias)
        assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 1e-1 * 1.001
        torch.testing.assert_close(m.norm.weight, torch.ones(128))
        bound = 1 / math.sqrt(64)  # nn.Linear's default init, not the backbone's normal(0, 0.02)
        assert m.in_proj.weight.abs().max() <= bound and m.in_proj.weight.std() > 0.02 * 1.5
    exempt = {n.split("mixer.")[-1] for n, p in model.named_parameters() if "mixer" in n and no_weight_decay(n, p)}
    assert exempt == {"A_log", "D", "dt_bias", "conv1d.bias", "norm.weight"}


@pytest.mark.slow  # a fresh interpreted process: the official Triton kernels under TRITON_INTERPRET=1
def test_official_triton_kernels_match_in_an_interpreted_process() -> None:
    if importlib.util.find_spec("triton") is None or importlib.util.find_spec("mamba_ssm") is None:
        pytest.skip("triton and mamba-ssm are needed for the official Triton kernels")
    run_interpreted(os.path.join(HERE, "mamba2_triton_cases.py"), "official Triton cases", timeout=600)


@settings(max_examples=15, deadline=None)
@given(
    d_model=st.sampled_from([8, 12, 16, 24]),
    expand=st.integers(1, 2),
    d_state=st.integers(1, 12),
    d_conv=st.integers(2, 5),  # the official unfused conv slices [:-(d_conv - 1)], empty at d_conv=1
    heads_groups=st.sampled_from([(None, 1), (4, 1), (4, 2), (2, 4), (8, 1)]),
    flags=st.fixed_dictionaries({"D_has_hdim": st.booleans(), "norm_before_gate": st.booleans(),
                                 "rmsnorm": st.booleans(), "bias": st.booleans(), "conv_bias": st.booleans()}),
    length=st.integers(1, 30),
)
def test_forward_matches_official_over_the_option_space(official, d_model, expand, d_state, d_conv, heads_groups,
                                                        flags, length):
    headdim, ngroups = heads_groups
    kwargs = dict(d_state=d_state, d_conv=d_conv, expand=expand, headdim=headdim, ngroups=ngroups, **flags)
    d_ssm = expand * d_model
    assume((headdim is None or d_ssm % headdim == 0) and (d_ssm // (headdim or default_headdim(d_ssm, 1))) % ngroups == 0)
    ours, theirs = perturbed_twin(official, d_model, **kwargs)
    x = torch.randn(2, length, d_model)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
