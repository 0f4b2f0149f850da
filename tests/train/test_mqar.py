"""MQAR generator invariants (Zoology semantics) and the data module's seeding and split disjointness."""

import numpy as np
import pytest
import torch

from seqmix.train.data import IGNORE_INDEX
from seqmix.train.data.mqar import MQARDataModule, check_mqar, generate_mqar

V, L, KV = 64, 48, 6


@pytest.fixture(scope="module")
def examples():
    return generate_mqar(300, L, KV, V, 0.01, np.random.default_rng(0))


def test_shapes_and_dtypes(examples):
    inputs, labels = examples
    assert inputs.shape == labels.shape == (300, L)
    assert inputs.dtype == labels.dtype == torch.int64


def test_kv_block_keys_first_half_values_second_half(examples):
    inputs, _ = examples
    keys, values = inputs[:, 0 : 2 * KV : 2], inputs[:, 1 : 2 * KV : 2]
    assert ((keys >= 1) & (keys < V // 2)).all(), "keys come from the first half of the vocabulary (0 is filler)"
    assert ((values >= V // 2) & (values < V)).all(), "values come from the second half"
    for row in keys:
        assert len(set(row.tolist())) == KV, "keys of one example are distinct"
    for row in values:
        assert len(set(row.tolist())) == KV, "values of one example are distinct"


def test_labels_only_at_queried_keys_with_their_paired_value(examples):
    inputs, labels = examples
    for x, y in zip(inputs.tolist(), labels.tolist(), strict=True):
        pairs = dict(zip(x[0 : 2 * KV : 2], x[1 : 2 * KV : 2], strict=True))
        supervised = [t for t in range(L) if y[t] != IGNORE_INDEX]
        assert len(supervised) == KV, "one query per key"
        assert all(t >= 2 * KV for t in supervised), "queries come after the key-value block"
        assert all((t - 2 * KV) % 2 == 0 for t in supervised), "queries sit at even offsets of the query region"
        assert sorted(x[t] for t in supervised) == sorted(pairs), "every key is queried exactly once"
        for t in supervised:
            assert y[t] == pairs[x[t]], "the label at a queried key is the value paired with it"
        region = [x[t] for t in range(2 * KV, L) if t not in supervised]
        assert set(region) <= {0}, "the rest of the query region is filler"


def test_query_positions_favour_the_start_for_small_power_a():
    _, labels = generate_mqar(4000, 64, 4, 128, 0.01, np.random.default_rng(1))
    slots = ((labels != IGNORE_INDEX).nonzero()[:, 1] - 8) // 2
    counts = torch.bincount(slots, minlength=28).float()
    # p(i) ∝ i^(a-1) ~ 1/i: the first slot is drawn much more often than a late one, and counts fall off
    assert counts[0] > 5 * counts[20]
    assert counts[0] > counts[1] > counts[3] > counts[10]
    _, uniform = generate_mqar(4000, 64, 4, 128, 1.0, np.random.default_rng(1))  # a = 1: uniform slots
    u = torch.bincount(((uniform != IGNORE_INDEX).nonzero()[:, 1] - 8) // 2, minlength=28).float()
    assert u.max() / u.min() < 1.5


def test_same_seed_same_data_and_different_seed_differs():
    a = generate_mqar(50, L, KV, V, 0.01, np.random.default_rng(7))
    b = generate_mqar(50, L, KV, V, 0.01, np.random.default_rng(7))
    c = generate_mqar(50, L, KV, V, 0.01, np.random.default_rng(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def _rows(ds):
    return {row.numpy().tobytes() for row in ds.input_ids}


def test_datamodule_reproducible_and_splits_disjoint():
    kw = dict(vocab_size=V, seq_len=L, num_kv_pairs=KV, num_train_examples=400, num_val_examples=100, seed=3)
    dm1, dm2 = MQARDataModule(**kw), MQARDataModule(**kw)
    dm1.setup("fit")
    dm2.setup("fit")
    for split in ("train", "val", "test"):
        assert torch.equal(dm1.datasets[split].input_ids, dm2.datasets[split].input_ids)
        assert torch.equal(dm1.datasets[split].labels, dm2.datasets[split].labels)
    assert [len(dm1.datasets[s]) for s in ("train", "val", "test")] == [400, 100, 100]
    train, val, test = (_rows(dm1.datasets[s]) for s in ("train", "val", "test"))
    assert not train & val and not train & test and not val & test
    other = MQARDataModule(**{**kw, "seed": 4})
    other.setup("fit")
    assert not torch.equal(other.datasets["val"].input_ids, dm1.datasets["val"].input_ids)


def test_disjointness_holds_even_when_duplicates_are_likely():
    # one pair, 4 keys x 5 values x 1 query slot: only 20 distinct examples, so independent draws collide
    dm = MQARDataModule(vocab_size=10, seq_len=4, num_kv_pairs=1, num_train_examples=20, num_val_examples=4, seed=0)
    dm.setup()
    train, val, test = (_rows(dm.datasets[s]) for s in ("train", "val", "test"))
    assert len(train) <= 20 - len(val) - len(test)
    assert not train & val and not train & test and not val & test
    # 1 key x 3 values: 30 validation draws take all 3 examples, leaving none for the test split
    with pytest.raises(ValueError, match="could only draw 0 of 30 test examples"):
        MQARDataModule(vocab_size=5, seq_len=4, num_kv_pairs=1, num_train_examples=20, num_val_examples=30).setup()


def test_batches_follow_the_contract():
    dm = MQARDataModule(vocab_size=V, seq_len=L, num_kv_pairs=KV, num_train_examples=64, num_val_examples=16,
                        batch_size=8)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "labels"}
    assert batch["input_ids"].shape == batch["labels"].shape == (8, L)
    assert dm.vocab_size == V and dm.chance_accuracy == pytest.approx(1 / (V // 2))
    first = [b["input_ids"] for b in dm.train_dataloader()]
    again = [b["input_ids"] for b in MQARDataModule(**dm.hparams).train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True)), "shuffling is seeded"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(seq_len=64, num_kv_pairs=17, vocab_size=128), ["num_kv_pairs=17", "seq_len=64", "4 * 17 = 68"]),
        (dict(seq_len=64, num_kv_pairs=4, vocab_size=64), ["vocab_size=64", "seq_len=64"]),
        (dict(seq_len=64, num_kv_pairs=4, vocab_size=32), ["vocab_size=32", "seq_len=64"]),
        (dict(seq_len=0, num_kv_pairs=4, vocab_size=32), ["seq_len", "0"]),
    ],
)
def test_impossible_settings_raise_naming_the_values(kwargs, words):
    with pytest.raises(ValueError) as err:
        MQARDataModule(**kwargs)
    for word in words:
        assert word in str(err.value)
    with pytest.raises(ValueError):
        check_mqar(power_a=0.01, **kwargs)


def test_bad_counts_and_power_raise():
    with pytest.raises(ValueError, match="batch_size"):
        MQARDataModule(batch_size=0)
    with pytest.raises(ValueError, match="power_a"):
        MQARDataModule(power_a=0.0)
