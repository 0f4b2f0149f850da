"""The task contract, run over every registered synthetic task (as the mixer contract runs over every mixer).

Seeded determinism, disjoint splits of the asked sizes, the batch contract, labels only at the answers, a uniform
`generate(n, seq_len, depth, generator)`, and impossible settings rejected early in one line."""

import pytest
import torch

from seqmix.train.data import IGNORE_INDEX, TASKS, get_task, task_name
from seqmix.train.data.synthetic import SyntheticDataModule, row_keys
from seqmix.train.data.tasks import class_path, register_task

CASES = {
    # name -> (tiny constructor options, supervised positions per example)
    "mqar": (dict(vocab_size=40, seq_len=16, num_kv_pairs=3, num_train_examples=60, num_val_examples=12,
                  num_test_examples=10, batch_size=8), 3),
    "needle": (dict(seq_len=24, vocab_size=24, num_keys=4, num_values=8, value_len=2, num_train=60, num_val=12,
                    num_test=10), 2),
    "multi_needle": (dict(seq_len=32, vocab_size=24, num_keys=4, num_values=8, num_needles=3, query="all",
                          num_train=60, num_val=12, num_test=10), 3),
    "induction": (dict(seq_len=12, vocab_size=8, num_train=60, num_val=12, num_test=10), 1),
    "selective_copying": (dict(seq_len=16, vocab_size=8, num_tokens=3, num_train=60, num_val=12, num_test=10), 3),
    "parity": (dict(seq_len=12, num_train=60, num_val=12, num_test=10), 1),
    "permutation": (dict(seq_len=6, degree=3, num_train=60, num_val=12, num_test=10), 1),
}
SIZES = {"train": 60, "val": 12, "test": 10}
REAL_VALUED = {"icl_regression"}
"""Tasks of real-valued tokens (not token ids): their contract is in tests/train/test_icl_regression.py."""


def test_every_registered_task_has_a_case():
    assert set(TASKS) == set(CASES) | REAL_VALUED, "add a tiny case here for every task registered with @register_task"


def build(name, **overrides):
    options, _ = CASES[name]
    return get_task(name)(**{**options, **overrides})


@pytest.fixture(scope="module", params=sorted(CASES))
def task(request):
    dm = build(request.param)
    dm.setup()
    return request.param, dm


def test_registry_finds_the_task_by_name_and_by_class_path(task):
    name, dm = task
    assert isinstance(dm, SyntheticDataModule) and type(dm).task_name == name
    assert task_name(class_path(type(dm))) == name


def test_splits_have_the_asked_sizes_and_are_disjoint(task):
    _, dm = task
    keys = {s: row_keys({"input_ids": d.input_ids, "labels": d.labels}) for s, d in dm.datasets.items()}
    assert {s: len(k) for s, k in keys.items()} == SIZES
    sets = {s: set(k) for s, k in keys.items()}
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]


def test_splits_are_fixed_by_the_seed(task):
    name, dm = task
    again, other = build(name), build(name, seed=1)
    again.setup()
    other.setup()
    for split in SIZES:
        assert torch.equal(dm.datasets[split].input_ids, again.datasets[split].input_ids)
        assert torch.equal(dm.datasets[split].labels, again.datasets[split].labels)
        assert not torch.equal(dm.datasets[split].input_ids, other.datasets[split].input_ids)


def test_batches_follow_the_contract_with_labels_only_at_the_answers(task):
    name, dm = task
    _, answers = CASES[name]
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "labels"} and batch["input_ids"].dtype == batch["labels"].dtype == torch.int64
    assert batch["input_ids"].shape == batch["labels"].shape == (dm.batch_size, dm.seq_len)
    for split in SIZES:
        inputs, labels = dm.datasets[split].input_ids, dm.datasets[split].labels
        supervised = labels != IGNORE_INDEX
        assert (supervised.sum(dim=1) == answers).all(), "exactly the answer positions carry a label"
        assert ((inputs >= 0) & (inputs < dm.vocab_size)).all()
        assert ((labels[supervised] >= 0) & (labels[supervised] < dm.vocab_size)).all()
    assert 0 < dm.chance_accuracy < 1


def test_generate_is_uniform_and_seeded(task):
    _, dm = task
    longer = 2 * dm.seq_len
    draw = dm.generate(5, longer, None, generator=torch.Generator().manual_seed(4))
    same = dm.generate(5, longer, None, generator=torch.Generator().manual_seed(4))
    other = dm.generate(5, longer, None, generator=torch.Generator().manual_seed(5))
    assert draw["input_ids"].shape == draw["labels"].shape == (5, longer)
    assert torch.equal(draw["input_ids"], same["input_ids"]) and torch.equal(draw["labels"], same["labels"])
    assert not torch.equal(draw["input_ids"], other["input_ids"])
    assert ((draw["labels"] != IGNORE_INDEX).sum(dim=1) == CASES[task[0]][1]).all()
    if dm.has_depth:
        assert dm.generate(3, depth=0.5)["input_ids"].shape == (3, dm.seq_len)
    else:
        with pytest.raises(ValueError, match="has no depth"):
            dm.generate(3, depth=0.5)


def test_impossible_settings_are_rejected_in_one_line(task):
    name, dm = task
    for call in (lambda: dm.generate(2, seq_len=2), lambda: build(name, seq_len=2), lambda: dm.generate(0)):
        with pytest.raises(ValueError) as err:
            call()
        assert "\n" not in str(err.value) and ("seq_len" in str(err.value) or "n must be" in str(err.value))


def test_a_new_task_is_one_class_and_a_registration():
    @register_task("_contract_probe")
    class Probe(SyntheticDataModule):
        def check(self, seq_len):
            pass

        def _generate(self, n, seq_len, depth, rng):
            tokens = torch.randint(0, self.vocab_size, (n, seq_len), generator=rng)
            return {"input_ids": tokens, "labels": tokens}

    try:
        assert get_task("_contract_probe") is Probe and task_name(class_path(Probe)) == "_contract_probe"
        dm = Probe(seq_len=8, vocab_size=50, num_train=20, num_val=4, num_test=4)
        assert len(next(iter(dm.train_dataloader()))["input_ids"]) == 20
        with pytest.raises(ValueError, match="already registered"):
            register_task("_contract_probe")(type("Other", (Probe,), {}))
    finally:
        del TASKS["_contract_probe"]
    with pytest.raises(ValueError, match="unknown task 'nope'; choose one of"):
        get_task("nope")
