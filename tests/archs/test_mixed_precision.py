"""Mamba under bf16 autocast: A_log, the SSM state and the discretisation stay fp32; outputs follow autocast."""

import pytest
import torch

from seqmix import archs, kernels

# bf16 keeps 8 significant bits (relative rounding 2^-9 ~ 0.2%); a Mamba layer chains four bf16 matmuls and a conv
# before and after the fp32 scan, so its output may differ from the fp32 forward by a few of those roundings. Allowed:
# 3% of the output's largest magnitude (measured: about 0.7%).
BF16_TOL = 0.03


def autocast(enabled: bool = True):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def close(actual: torch.Tensor, expected: torch.Tensor, tol: float = BF16_TOL) -> bool:
    return bool((actual.float() - expected.float()).abs().max() <= tol * expected.float().abs().max())


def test_scan_under_autocast_is_exactly_the_fp32_scan_forward_and_backward():
    """Nothing inside the torch scan runs in bf16: output and every gradient are bit-identical with autocast on."""
    torch.manual_seed(0)
    b, d, length, n = 2, 16, 70, 8
    leaves = [torch.randn(b, d, length), torch.randn(b, d, length), -torch.rand(d, n), torch.randn(b, n, length),
              torch.randn(b, n, length), torch.randn(d), torch.randn(b, d, length), torch.randn(d)]

    def run(enabled: bool):
        inputs = [t.clone().requires_grad_() for t in leaves]
        with autocast(enabled):
            y, last = kernels.selective_scan(*inputs, delta_softplus=True, return_last_state=True, backend="torch")
            (y.sum() + last.sum()).backward()
        return y, last, [t.grad for t in inputs]

    y32, last32, grads32 = run(False)
    y, last, grads = run(True)
    assert y.dtype == last.dtype == torch.float32
    assert torch.equal(y, y32) and torch.equal(last, last32)
    for g, g32 in zip(grads, grads32, strict=True):
        assert torch.equal(g, g32)


@pytest.mark.parametrize("backend", ["torch", "ref"])
def test_mamba_under_bf16_autocast_keeps_fp32_parameters_and_state(backend):
    torch.manual_seed(0)
    mixer = archs.Mamba(32, d_state=8, scan_backend=backend)
    x = torch.randn(2, 24, 32)
    y32 = mixer(x)
    _, state32 = mixer.prefill(x)
    with autocast():
        y = mixer(x)
        prefix, state = mixer.prefill(x[:, :16])
        steps = []
        for t in range(16, 24):
            out, state = mixer.step(x[:, t], state)
            steps.append(out)
    assert mixer.A_log.dtype == mixer.D.dtype == torch.float32
    assert y.dtype == prefix.dtype == steps[0].dtype == torch.bfloat16  # outputs follow autocast
    assert {k: v.dtype for k, v in state.items()} == {"conv": torch.float32, "ssm": torch.float32}
    assert close(y, y32)
    assert close(torch.cat([prefix, torch.stack(steps, 1)], 1), y32)  # decode under autocast too
    assert close(state["ssm"], state32["ssm"]) and close(state["conv"], state32["conv"])


def test_mamba_gradients_under_bf16_autocast_are_fp32_and_close():
    torch.manual_seed(0)
    mixer = archs.Mamba(32, d_state=8)
    x = torch.randn(2, 24, 32)
    mixer(x).square().mean().backward()
    ref = {n: p.grad.clone() for n, p in mixer.named_parameters()}
    mixer.zero_grad()
    with autocast():
        loss = mixer(x).float().square().mean()
    loss.backward()
    for name, p in mixer.named_parameters():
        assert p.grad.dtype == torch.float32, name
        assert close(p.grad, ref[name], tol=0.05), name  # gradients pass through bf16 matmuls twice


def test_language_model_decode_states_are_fp32_under_autocast():
    torch.manual_seed(0)
    model = archs.LanguageModel(archs.ModelConfig(mixer="mamba", d_model=32, n_layers=2, vocab_size=50))
    ids = torch.randint(0, 50, (2, 12))
    with autocast():
        logits, states = model.prefill(ids)
        logits, states = model.step(logits.argmax(-1)[:, -1], states)
    assert all(t.dtype == torch.float32 for s in states for t in s.values())
    assert model.state_bytes(13, batch=2) == sum(t.numel() * t.element_size() for s in states for t in s.values())
