"""The task contract, run over every registered synthetic task (as the mixer contract runs over every mixer).

Seeded determinism, disjoint splits of the asked sizes, the batch contract, labels only at the answers, a uniform
`generate(n, seq_len, depth, generator)`, and impossible settings rejected early in one line."""

import inspect

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser

from seqmix.train.data import IGNORE_INDEX, TASKS, get_task, task_name
from seqmix.train.data.splits import SeededSplitsDataModule
from seqmix.train.data.synthetic import SyntheticDataModule, row_keys
from seqmix.train.data.tasks import class_path, register_task
from seqmix.train.main import main
from seqmix.train.messages import init_options
from seqmix.train.tools.evaluate.tasks import build_task

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
FILLED_IN = {"parity": {"degree"}, "mqar": {"num_train", "num_val", "num_test"}}
"""Options of a parent's __init__ that a task passes on itself instead of taking them (MQAR names the sizes its way)."""
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


def declared_options(cls: type) -> dict[str, object]:
    """Every option along cls's __init__ chain (followed while an __init__ takes **kwargs), with the default of the
    nearest class that declares it, less those the task fills in: the slow reference for jsonargparse's resolution."""
    options: dict[str, object] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        for p in params:
            if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD:
                options.setdefault(p.name, p.default)
        if all(p.kind is not p.VAR_KEYWORD for p in params):
            break
    return {k: v for k, v in options.items() if k not in FILLED_IN.get(cls.task_name, set())}


def test_the_parser_lists_every_shared_option_with_the_tasks_defaults(task):
    name, dm = task
    cls, expected = type(dm), declared_options(type(dm))
    shared = [k for k, p in inspect.signature(SeededSplitsDataModule.__init__).parameters.items() if p.default is not p.empty]
    assert set(shared) - FILLED_IN.get(name, set()) <= set(expected), "every option of the base is the task's option"
    assert all(v is not inspect.Parameter.empty for v in expected.values()), "the task gives seq_len and vocab_size"
    parser = ArgumentParser()
    assert parser.add_class_arguments(cls, "data") == [f"data.{k}" for k in expected]
    assert parser.get_defaults().data.as_dict() == expected
    assert init_options(class_path(cls)) == list(expected), "the hint after an unknown option names them all"


def test_seqmix_fit_takes_the_shared_options_of_every_task(task, capsys):
    name, dm = task
    cls = type(dm)
    code = 0
    try:
        main(["fit", "--model.model.mixer", "attention", "--data", class_path(cls), "--data.init_args.batch_size", "8",
              "--data.init_args.seed", "3", "--print_config"])
    except SystemExit as exit_:
        code = exit_.code
    data = yaml.safe_load(capsys.readouterr().out)["data"]
    assert code in (0, None) and data["class_path"] == class_path(cls)
    assert data["init_args"] == {**declared_options(cls), "batch_size": 8, "seed": 3}
    built = cls(**data["init_args"])
    assert (built.batch_size, built.seed, built.seq_len) == (8, 3, declared_options(cls)["seq_len"])


@pytest.mark.parametrize("shared", [{"batch_size": 4}, {"seed": 5, "num_workers": 0}])
def test_hparams_record_every_option_with_its_value_and_rebuild_the_task(task, shared):
    name, _ = task
    given = {**CASES[name][0], **shared}  # shared options passed on through **kwargs, or left to the base's defaults
    dm = build(name, **shared)
    recorded = {k: v for k, v in dm.hparams.items() if k != "_class_path"}
    expected = declared_options(type(dm))
    assert set(recorded) == set(expected)
    assert recorded["vocab_size"] == dm.vocab_size and recorded["seq_len"] == dm.seq_len  # resolved if None
    for key, default in expected.items():
        if given.get(key, default) is not None:
            assert recorded[key] == given.get(key, default), key
    assert dm.hparams.get("_class_path") == (None if name == "mqar" else class_path(type(dm)))
    again = build_task(name, dict(dm.hparams), dm.vocab_size).datamodule  # as `seqmix evaluate` rebuilds it
    assert type(again) is type(dm) and dict(again.hparams) == dict(dm.hparams)
    dm.setup()
    again.setup()
    for split in SIZES:
        assert torch.equal(dm.datasets[split].input_ids, again.datasets[split].input_ids)
        assert torch.equal(dm.datasets[split].labels, again.datasets[split].labels)


def test_bad_shared_options_fail_early_in_one_line_naming_them(task):
    name, _ = task
    mqar = name == "mqar"
    sizes = ("num_train_examples", "num_val_examples", "num_test_examples") if mqar else ("num_train", "num_val", "num_test")
    cases = [("batch_size", 0, "a positive integer"), ("num_workers", -1, "a non-negative integer"),
             ("seed", 1.5, "a non-negative integer" if mqar else "an integer"), ("batch_size", True, "a positive integer"),
             *((size, 0, "a positive integer") for size in sizes)]
    if mqar:  # its NumPy streams take no negative seed
        cases.append(("seed", -1, "a non-negative integer"))
    for option, value, kind in cases:
        with pytest.raises(ValueError) as err:
            build(name, **{option: value})
        assert str(err.value) == f"{'MQAR: ' if mqar else ''}{option} must be {kind}, got {value!r}"


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
