"""Parity and the S_n word problem: labels against a slow reference, the group table's laws, settings checked."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqmix.train.data import IGNORE_INDEX, get_task
from seqmix.train.data.state_tracking import composition_table, permutations


def compose_reference(elements: list[int], degree: int) -> list[int]:
    """Prefix compositions g_t ∘ ... ∘ g_1 as indices into the lexicographic list, by composing tuples."""
    perms = list(itertools.permutations(range(degree)))
    state, out = tuple(range(degree)), []
    for g in elements:
        state = tuple(perms[g][state[i]] for i in range(degree))  # apply state, then g
        out.append(perms.index(state))
    return out


@pytest.mark.parametrize("degree", [2, 3, 4, 5])
def test_the_composition_table_is_a_group(degree):
    table = composition_table(permutations(degree))
    n = len(table)
    assert torch.equal(table[0], torch.arange(n)) and torch.equal(table[:, 0], torch.arange(n))  # identity
    for row in table:  # a Latin square: every element has an inverse and cancellation holds
        assert torch.equal(row.sort().values, torch.arange(n))
    a, b, c = torch.randint(0, n, (3, 200), generator=torch.Generator().manual_seed(degree))
    assert torch.equal(table[table[a, b], c], table[a, table[b, c]])  # associative
    if degree >= 3:
        assert not torch.equal(table, table.t())  # S_n is not abelian for n >= 3


@settings(max_examples=25, deadline=None)
@given(degree=st.sampled_from([3, 4, 5]), seq_len=st.integers(3, 20), seed=st.integers(0, 2**16))
def test_permutation_labels_are_the_running_composition(degree, seq_len, seed):
    dm = get_task("permutation")(seq_len=8, degree=degree, supervise="all")
    batch = dm.generate(3, seq_len, generator=torch.Generator().manual_seed(seed))
    inputs, labels = batch["input_ids"], batch["labels"]
    assert (inputs[:, -1] == dm.query).all() and (inputs[:, :-1] < dm.num_elements).all()
    for row_in, row_lab in zip(inputs.tolist(), labels.tolist(), strict=True):
        prefix = compose_reference(row_in[:-1], degree)
        assert row_lab[:-1] == prefix and row_lab[-1] == prefix[-1]
    last = get_task("permutation")(seq_len=8, degree=degree).generate(3, seq_len, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(last["input_ids"], inputs) and torch.equal(last["labels"][:, -1], labels[:, -1])
    assert (last["labels"][:, :-1] == IGNORE_INDEX).all()


def test_parity_labels_are_the_sum_of_the_bits_mod_2():
    dm = get_task("parity")(seq_len=33, supervise="all")
    batch = dm.generate(50, generator=torch.Generator().manual_seed(1))
    bits = batch["input_ids"][:, :-1]
    assert set(bits.unique().tolist()) == {0, 1} and (batch["input_ids"][:, -1] == 2).all()
    assert torch.equal(batch["labels"][:, :-1], bits.cumsum(1) % 2)
    assert torch.equal(batch["labels"][:, -1], bits.sum(1) % 2)
    assert dm.vocab_size == 3 and dm.chance_accuracy == 0.5
    assert 0.3 < batch["labels"][:, -1].float().mean() < 0.7  # the answer is balanced


@pytest.mark.parametrize("name,options", [("parity", {}), ("permutation", {"degree": 4, "supervise": "all"})])
def test_saved_hyperparameters_rebuild_the_task_for_seqmix_evaluate(name, options):
    """`seqmix evaluate` rebuilds a task from its saved hyperparameters: parity's must not carry the parent's degree."""
    from seqmix.train.tools.evaluate.tasks import build_task

    dm = get_task(name)(seq_len=10, num_train=8, num_val=4, num_test=4, **options)
    task = build_task(name, dict(dm.hparams), dm.vocab_size)
    assert task.datamodule.vocab_size == dm.vocab_size and task.train_len == 10 and task.chance == dm.chance_accuracy
    longer = task.sample(4, 40, None, seed=0)
    assert longer["input_ids"].shape == (4, 40) and (longer["input_ids"][:, -1] == dm.query).all()


@pytest.mark.parametrize("options,message", [
    (dict(degree=1), "degree must be an integer >= 2, got 1"),
    (dict(degree=9), "degree=9 is too large"),
    (dict(degree=3, vocab_size=6), "vocab_size=6 is too small: the 6 elements of S_3 and the query token need >= 7"),
    (dict(supervise="every"), "supervise must be one of last, all, got 'every'"),
])
def test_impossible_permutation_settings_are_rejected(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as err:
        get_task("permutation")(seq_len=8, **options)
    assert "\n" not in str(err.value)
