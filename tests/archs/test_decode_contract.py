"""The decode contract's rule on state ownership, for every registered mixer: `step` may update the state it is given
in place, `clone_state` makes a copy that steps on the original never touch, and `prefill` shares nothing with the
module."""

import pytest
import torch

from seqmix.archs import LanguageModel, ModelConfig

from .mixer_cases import CASES, build


@pytest.mark.parametrize("case", CASES)
def test_a_cloned_state_replays_the_same_steps(case):
    torch.manual_seed(4)
    mixer = build(case, 16).double()
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    _, state = mixer.prefill(x[:, :5])
    saved = mixer.clone_state(state)
    snapshot = {k: t.clone() for k, t in saved.items()}
    first = [mixer.step(x[:, t], state)[0] for t in range(5, 12)]  # may mutate `state`, never `saved`
    for k, t in saved.items():
        assert torch.equal(t, snapshot[k]), f"{case}: stepping the original changed the clone's {k}"
    again = [mixer.step(x[:, t], saved)[0] for t in range(5, 12)]
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("case", CASES)
def test_step_advances_the_state_it_is_given(case):
    """Callers may ignore step's returned state: it is the dict they passed, advanced."""
    torch.manual_seed(5)
    mixer = build(case, 16).double()
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    for cut in (0, 3):
        _, state = mixer.prefill(x[:, :cut])
        for t in range(cut, 6):
            y, returned = mixer.step(x[:, t], state)
            assert returned is state, f"{case}: step returned a new state dict instead of advancing the given one"
        torch.testing.assert_close(y, mixer(x)[:, -1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_prefill_state_shares_no_storage_with_the_parameters(case):
    mixer = build(case, 16)
    _, state = mixer.prefill(torch.randn(1, 3, 16))
    params = {p.untyped_storage().data_ptr() for p in mixer.parameters()}
    assert not params & {t.untyped_storage().data_ptr() for t in state.values()}


def test_model_clone_states_copies_every_layer():
    model = LanguageModel(ModelConfig(mixer="mamba", d_model=16, n_layers=2, vocab_size=32))
    _, states = model.prefill(torch.randint(32, (1, 6)))
    copy = model.clone_states(states)
    model.step(torch.tensor([3]), states)
    assert any(not torch.equal(copy[i][k], states[i][k]) for i in range(2) for k in states[i])
    assert all(c[k].data_ptr() != s[k].data_ptr() for c, s in zip(copy, states, strict=True) for k in s)
