"""The icl_regression task: y = w.x (+ noise) in every token, the query's y hidden, seeded disjoint splits, one-line errors."""

import math

import pytest
import torch
from jsonargparse import ArgumentParser

from seqmix.train.data import TASKS, DataError, get_task, task_name
from seqmix.train.data.icl_regression import ICLRegressionDataModule
from seqmix.train.data.tasks import class_path

SIZES = dict(num_train=60, num_val=12, num_test=10)


def build(**options):
    return get_task("icl_regression")(**{"dim": 4, "num_context": 6, "batch_size": 8, **SIZES, **options})


def test_registered_by_name_and_class_path():
    assert TASKS["icl_regression"] is ICLRegressionDataModule
    assert task_name(class_path(ICLRegressionDataModule)) == "icl_regression"
    assert build().hparams["_class_path"] == class_path(ICLRegressionDataModule)


OPTIONS = {"dim": 10, "num_context": 10, "noise_std": 0.0, "x_range": 1.0, "batch_size": 64, "num_train": 10_000,
           "num_val": 500, "num_test": 500, "seed": 0, "num_workers": 0}
"""Every option in the order the CLI lists it, with its default (the shared ones come from the seeded-splits base)."""


def test_the_parser_lists_every_option_and_hparams_record_them_in_that_order():
    parser = ArgumentParser()
    assert parser.add_class_arguments(ICLRegressionDataModule, "data") == [f"data.{k}" for k in OPTIONS]
    assert parser.get_defaults().data.as_dict() == OPTIONS
    dm = ICLRegressionDataModule(seed=3, num_test=7, dim=2)  # out of order, some left to their defaults
    assert list(dm.hparams.items()) == [*{**OPTIONS, "dim": 2, "num_test": 7, "seed": 3}.items(),
                                        ("_class_path", class_path(ICLRegressionDataModule))]
    assert dict(ICLRegressionDataModule(**{k: v for k, v in dm.hparams.items() if k != "_class_path"}).hparams) == \
        dict(dm.hparams)


@pytest.mark.parametrize("num_context", [1, 6, 13])
def test_every_token_is_x_then_w_dot_x_and_the_query_hides_its_y(num_context):
    dm = build()
    batch = dm.generate(50, num_context, generator=torch.Generator().manual_seed(3))
    inputs, targets, w = batch["inputs"], batch["targets"], batch["w"]
    assert inputs.shape == (50, num_context + 1, 5) and targets.shape == (50,) and w.shape == (50, 4)
    assert inputs.dtype == targets.dtype == torch.float32
    for b in range(50):
        for i in range(num_context):
            assert torch.isclose(inputs[b, i, -1], inputs[b, i, :-1] @ w[b], atol=1e-5)
        assert inputs[b, -1, -1] == 0.0 and torch.isclose(targets[b], inputs[b, -1, :-1] @ w[b], atol=1e-5)


def test_distributions_x_uniform_in_the_range_w_standard_normal_noise_of_the_asked_size():
    dm = build(dim=8, x_range=0.5, noise_std=0.3)
    batch = dm.generate(4000, 10, generator=torch.Generator().manual_seed(0))
    x, w = batch["inputs"][..., :-1], batch["w"]
    assert x.abs().max() <= 0.5 and abs(float(x.mean())) < 0.01 and math.isclose(float(x.var()), 0.25 / 3, rel_tol=0.02)
    assert abs(float(w.mean())) < 0.02 and math.isclose(float(w.var()), 1.0, rel_tol=0.03)
    residual = batch["inputs"][:, :-1, -1] - torch.einsum("nld,nd->nl", x[:, :-1], w)
    assert math.isclose(float(residual.std()), 0.3, rel_tol=0.02)
    query = batch["targets"] - (x[:, -1] * w).sum(-1)  # the target is noisy too
    assert math.isclose(float(query.std()), 0.3, rel_tol=0.05)
    assert math.isclose(float(batch["targets"].square().mean()), dm.baseline_mse, rel_tol=0.06)


def test_splits_have_the_asked_sizes_are_disjoint_and_fixed_by_the_seed():
    dm, again, other = build(), build(), build(seed=1)
    for m in (dm, again, other):
        m.setup()
    rows = {s: {r.numpy().tobytes() for r in d.inputs} for s, d in dm.datasets.items()}
    assert {s: len(r) for s, r in rows.items()} == {"train": 60, "val": 12, "test": 10}
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"] and not rows["val"] & rows["test"]
    for split in rows:
        assert torch.equal(dm.datasets[split].inputs, again.datasets[split].inputs)
        assert torch.equal(dm.datasets[split].targets, again.datasets[split].targets)
        assert not torch.equal(dm.datasets[split].inputs, other.datasets[split].inputs)


def test_a_split_that_repeats_an_earlier_one_is_an_error(monkeypatch):
    dm = build(num_test=12)  # as many as val: drawn from the same stream, the test tasks would be val's
    monkeypatch.setattr(dm, "split_rng", lambda split: torch.Generator().manual_seed(7))  # one stream for all
    with pytest.raises(DataError, match="the test split repeats a task of an earlier split"):
        dm.setup()


def test_batches_follow_the_regression_contract():
    dm = build()
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"inputs", "targets"}
    assert batch["inputs"].shape == (8, 7, 5) and batch["targets"].shape == (8,)
    assert dm.token_dim == 5 and dm.seq_len == 7
    val = next(iter(dm.val_dataloader()))
    assert torch.equal(val["inputs"], dm.datasets["val"].inputs[:8])


def test_generate_is_seeded():
    dm = build()
    a = dm.generate(5, 9, generator=torch.Generator().manual_seed(4))
    b = dm.generate(5, 9, generator=torch.Generator().manual_seed(4))
    c = dm.generate(5, 9, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a["inputs"], b["inputs"]) and not torch.equal(a["inputs"], c["inputs"])
    assert torch.equal(dm.generate(3)["inputs"], dm.generate(3)["inputs"])  # the default stream is fixed too


@pytest.mark.parametrize(("options", "words"), [
    (dict(dim=0), "dim must be a positive integer, got 0"),
    (dict(num_context=0), "num_context must be a positive integer, got 0"),
    (dict(noise_std=-0.1), "noise_std must be a finite number >= 0, got -0.1"),
    (dict(noise_std=float("nan")), "noise_std must be a finite number >= 0, got nan"),
    (dict(x_range=0.0), "x_range must be a finite number > 0, got 0.0"),
    (dict(x_range=True), "x_range must be a finite number > 0, got True"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(num_val=0), "num_val must be a positive integer"),
    (dict(seed="a"), "seed must be an integer, got 'a'"),
])
def test_impossible_settings_are_rejected_in_one_line(options, words):
    with pytest.raises(ValueError) as err:
        build(**options)
    assert words in str(err.value) and "\n" not in str(err.value)
    for call, message in ((lambda: build().generate(0), "n must be"), (lambda: build().generate(2, 0), "num_context")):
        with pytest.raises(ValueError, match=message):
            call()
