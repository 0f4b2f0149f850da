"""The synthetic tasks: where things are placed, where labels are, seeding, split disjointness and clear errors."""

import pytest
import torch

from seqmix.train.data import IGNORE_INDEX
from seqmix.train.data.copying import COPY, NOISE, SelectiveCopyingDataModule
from seqmix.train.data.induction import TRIGGER, InductionDataModule
from seqmix.train.data.needle import NEEDLE, QUERY, MultiNeedleDataModule, NeedleDataModule
from seqmix.train.data.synthetic import row_keys, seeded_generator

DEPTHS = [0.0, 0.25, 0.5, 0.75, 1.0]
SMALL = dict(num_train=64, num_val=16, num_test=16, batch_size=8)


def answers(batch):
    """Positions (row, col) that carry a label."""
    return batch["labels"] != IGNORE_INDEX


# ---- needle -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_len", [1, 3])
@pytest.mark.parametrize("depth", DEPTHS)
def test_needle_sits_at_the_requested_depth_and_only_the_answer_is_labelled(depth, value_len):
    L = 61
    dm = NeedleDataModule(seq_len=L, vocab_size=40, num_keys=8, num_values=8, value_len=value_len, **SMALL)
    batch = dm.generate(50, depth=depth, generator=seeded_generator(1, "t"))
    x, y = batch["input_ids"], batch["labels"]
    needle_len, query_len = 2 + value_len, 1 + value_len  # [NEEDLE key v..], [QUERY key v_1..v_{m-1}]
    start = round(depth * (L - needle_len - query_len))
    assert dm.needle_start(L, depth) == start
    assert (x[:, start] == NEEDLE).all()
    assert ((x == NEEDLE).sum(1) == 1).all() and ((x == QUERY).sum(1) == 1).all()  # filler never holds a marker
    assert (x[:, L - query_len] == QUERY).all()
    assert torch.equal(x[:, start + 1], x[:, L - query_len + 1])  # the query asks for the needle's key
    values = x[:, start + 2 : start + 2 + value_len]
    labelled = answers(batch)
    assert labelled[:, L - value_len :].all() and not labelled[:, : L - value_len].any()
    assert torch.equal(y[:, L - value_len :], values)
    first_value, first_filler = 2 + 8, 2 + 8 + 8
    assert ((values >= first_value) & (values < first_filler)).all()


def test_needle_random_depth_covers_every_position():
    dm = NeedleDataModule(seq_len=32, vocab_size=40, num_keys=8, num_values=8, **SMALL)
    x = dm.generate(3000, generator=seeded_generator(0, "t"))["input_ids"]
    starts = (x == NEEDLE).float().argmax(1)
    assert set(starts.tolist()) == set(range(32 - 3 - 2 + 1))


@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_multi_needle_one_query(depth):
    L, k = 80, 4
    dm = MultiNeedleDataModule(seq_len=L, vocab_size=40, num_keys=8, num_values=8, num_needles=k, **SMALL)
    batch = dm.generate(200, depth=depth, generator=seeded_generator(2, "t"))
    x, y = batch["input_ids"], batch["labels"]
    assert ((x == NEEDLE).sum(1) == k).all()
    start = dm.needle_start(L, depth)
    assert start == round(depth * (L - 3 - 2))
    assert (x[:, start] == NEEDLE).all()
    assert torch.equal(x[:, -1], x[:, start + 1])  # the key asked for is the needle at `depth`
    assert answers(batch).sum(1).eq(1).all() and torch.equal(y[:, -1], x[:, start + 2])
    seen_before = seen_after = False
    for row in x:
        marks = (row == NEEDLE).nonzero().flatten()
        assert (marks.diff() >= 3).all()  # needles do not overlap
        keys = row[marks + 1]
        assert len(set(keys.tolist())) == k and ((keys >= 2) & (keys < 10)).all()  # distinct keys
        assert ((row[marks + 2] >= 10) & (row[marks + 2] < 18)).all()
        seen_before |= bool((marks < start).any())
        seen_after |= bool((marks > start).any())
    assert seen_after if depth == 0.0 else seen_before  # distractors go on either side of the queried needle
    if depth == 0.5:
        assert seen_after


def test_multi_needle_all_queries():
    L, k = 60, 3
    dm = MultiNeedleDataModule(seq_len=L, vocab_size=40, num_keys=8, num_values=8, num_needles=k, query="all", **SMALL)
    batch = dm.generate(100, generator=seeded_generator(3, "t"))
    x, y = batch["input_ids"], batch["labels"]
    assert dm.query_len == 3 * k - 1
    for row, lab in zip(x, y, strict=True):
        marks = (row == NEEDLE).nonzero().flatten()
        stored = dict(zip(row[marks + 1].tolist(), row[marks + 2].tolist(), strict=True))
        queries = (row == QUERY).nonzero().flatten()
        assert len(queries) == k and queries[0] == L - dm.query_len
        asked = row[queries + 1].tolist()
        assert sorted(asked) == sorted(stored)
        assert lab[queries + 1].tolist() == [stored[key] for key in asked]
        assert (lab != IGNORE_INDEX).sum() == k


# ---- induction ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", DEPTHS)
def test_induction_trigger_placement_and_label(depth):
    L = 50
    dm = InductionDataModule(seq_len=L, vocab_size=8, **SMALL)
    batch = dm.generate(100, depth=depth, generator=seeded_generator(4, "t"))
    x, y = batch["input_ids"], batch["labels"]
    p = round(depth * (L - 3))
    assert dm.trigger_index(L, depth) == p
    assert ((x == TRIGGER).sum(1) == 2).all() and (x[:, p] == TRIGGER).all() and (x[:, -1] == TRIGGER).all()
    assert answers(batch)[:, -1].all() and answers(batch).sum() == 100
    assert torch.equal(y[:, -1], x[:, p + 1])


# ---- selective copying --------------------------------------------------------------------------------------------


def test_selective_copying_layout():
    L, n = 40, 5
    dm = SelectiveCopyingDataModule(seq_len=L, vocab_size=10, num_tokens=n, **SMALL)
    batch = dm.generate(100, generator=seeded_generator(5, "t"))
    x, y = batch["input_ids"], batch["labels"]
    assert (x[:, L - n :] == COPY).all() and not (x[:, : L - n] == COPY).any()
    assert answers(batch)[:, L - n :].all() and not answers(batch)[:, : L - n].any()
    for row, lab in zip(x, y, strict=True):
        data = row[: L - n][row[: L - n] != NOISE]
        assert len(data) == n and torch.equal(data, lab[L - n :])  # in order of appearance
        assert ((data >= 2) & (data < 10)).all()


def test_selective_copying_longer_context_adds_noise_only():
    dm = SelectiveCopyingDataModule(seq_len=32, vocab_size=10, num_tokens=4, **SMALL)
    x = dm.generate(20, seq_len=256)["input_ids"]
    assert x.shape == (20, 256) and ((x[:, :252] != NOISE).sum(1) == 4).all()


# ---- every task ---------------------------------------------------------------------------------------------------

TASKS = [
    lambda **kw: NeedleDataModule(seq_len=40, vocab_size=40, num_keys=8, num_values=8, **kw),
    lambda **kw: MultiNeedleDataModule(seq_len=40, vocab_size=40, num_keys=8, num_values=8, num_needles=3, **kw),
    lambda **kw: InductionDataModule(seq_len=40, vocab_size=8, **kw),
    lambda **kw: SelectiveCopyingDataModule(seq_len=40, vocab_size=10, num_tokens=4, **kw),
]


@pytest.mark.parametrize("make", TASKS)
def test_batch_contract_seeding_and_disjoint_splits(make):
    dm = make(seed=7, **SMALL)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "labels"}
    assert batch["input_ids"].dtype == batch["labels"].dtype == torch.int64
    assert batch["input_ids"].shape == batch["labels"].shape == (8, 40)
    assert (batch["input_ids"] >= 0).all() and (batch["input_ids"] < dm.vocab_size).all()
    labelled = batch["labels"][answers(batch)]
    assert len(labelled) and (labelled >= 0).all() and (labelled < dm.vocab_size).all()

    again = make(seed=7, **SMALL)
    again.setup()
    other = make(seed=8, **SMALL)
    other.setup()
    for split in ("train", "val", "test"):
        assert torch.equal(dm.datasets[split].input_ids, again.datasets[split].input_ids)
        assert torch.equal(dm.datasets[split].labels, again.datasets[split].labels)
        assert not torch.equal(dm.datasets[split].input_ids, other.datasets[split].input_ids)
    assert not torch.equal(dm.datasets["train"].input_ids, dm.datasets["val"].input_ids[: len(dm.datasets["train"])])
    keys = {s: set(row_keys({"input_ids": d.input_ids, "labels": d.labels})) for s, d in dm.datasets.items()}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]


def test_train_split_drops_examples_that_are_held_out():
    # induction at seq_len 6, vocab 3 has under a hundred distinct examples: collisions are certain
    kw = dict(seq_len=6, vocab_size=3, num_train=200, num_val=5, num_test=5, seed=0)
    dm = InductionDataModule(**kw)
    dm.setup()
    held = set(row_keys({"input_ids": dm.datasets["val"].input_ids, "labels": dm.datasets["val"].labels}))
    raw = dm.generate(200, generator=seeded_generator(0, "train"))  # what train would be without the filter
    assert set(row_keys(raw)) & held  # the filter had something to remove
    train = set(row_keys({"input_ids": dm.datasets["train"].input_ids, "labels": dm.datasets["train"].labels}))
    assert len(dm.datasets["train"]) == 200 and not train & held
    too_small = InductionDataModule(seq_len=3, vocab_size=3, num_train=10, num_val=2, num_test=2)  # 2 examples exist
    with pytest.raises(ValueError, match="cannot draw 10 training examples"):
        too_small.setup()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: NeedleDataModule(seq_len=4), "seq_len=4"),
        (lambda: NeedleDataModule(vocab_size=20, num_keys=16, num_values=16), "vocab_size=20"),
        (lambda: NeedleDataModule(num_needles=5, num_keys=4, vocab_size=64), "num_needles=5"),
        (lambda: NeedleDataModule(query="some"), "query"),
        (lambda: NeedleDataModule(value_len=0), "value_len"),
        (lambda: MultiNeedleDataModule(seq_len=12, num_needles=4), "seq_len=12"),
        (lambda: InductionDataModule(vocab_size=2), "vocab_size=2"),
        (lambda: InductionDataModule(seq_len=2), "seq_len=2"),
        (lambda: SelectiveCopyingDataModule(seq_len=20, num_tokens=16), "seq_len=20"),
        (lambda: SelectiveCopyingDataModule(vocab_size=3), "vocab_size=3"),
        (lambda: InductionDataModule(batch_size=0), "batch_size"),
    ],
)
def test_impossible_settings_raise_naming_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("depth", [-0.1, 1.5, float("nan"), "half"])
def test_depth_outside_unit_interval_is_refused(depth):
    dm = NeedleDataModule(seq_len=32, vocab_size=40, num_keys=8, num_values=8, **SMALL)
    with pytest.raises(ValueError, match="depth must be a fraction"):
        dm.generate(2, depth=depth)


def test_generate_checks_the_length_asked_for_and_depth_only_where_it_exists():
    dm = NeedleDataModule(seq_len=32, vocab_size=40, num_keys=8, num_values=8, **SMALL)
    assert dm.generate(2, seq_len=1024, depth=0.3)["input_ids"].shape == (2, 1024)
    with pytest.raises(ValueError, match="seq_len=4 is too short"):
        dm.generate(2, seq_len=4)
    with pytest.raises(ValueError, match="has no depth"):
        SelectiveCopyingDataModule(seq_len=32, num_tokens=4, **SMALL).generate(2, depth=0.5)
