"""Every synthetic task's train / val / test splits (and the first epoch's training order) are pinned by digest.

The constants were computed on the code before the tasks moved onto one base: a refactor that changed a single
token of any split, or the order training reads them in, fails here (and would silently change checked-in results
such as `seqmix compare`'s MQAR accuracies)."""

import hashlib

import pytest

from seqmix.train.data.copying import SelectiveCopyingDataModule
from seqmix.train.data.induction import InductionDataModule
from seqmix.train.data.mqar import MQARDataModule
from seqmix.train.data.needle import MultiNeedleDataModule, NeedleDataModule

SETTINGS = {
    # compare's task (L=32, 4 kv pairs, vocab 64) with more training examples than MQAR draws in one chunk
    "mqar-compare": (MQARDataModule, dict(vocab_size=64, seq_len=32, num_kv_pairs=4, batch_size=32,
                                          num_train_examples=5000, num_val_examples=1000, seed=0)),
    # so few distinct examples that test and train must redraw around the held-out ones
    "mqar-crowded": (MQARDataModule, dict(vocab_size=16, seq_len=8, num_kv_pairs=1, num_train_examples=100,
                                          num_val_examples=20, num_test_examples=25, seed=3)),
    "mqar-default": (MQARDataModule, dict(num_train_examples=300, num_val_examples=50, seed=7, batch_size=16)),
    "needle": (NeedleDataModule, dict(seq_len=64, num_train=300, num_val=40, num_test=40, seed=1)),
    "multi_needle": (MultiNeedleDataModule, dict(seq_len=64, num_train=200, num_val=30, num_test=30, seed=2, query="all")),
    "induction": (InductionDataModule, dict(seq_len=32, num_train=300, num_val=40, num_test=40, seed=0)),
    "selective_copying": (SelectiveCopyingDataModule, dict(seq_len=64, num_train=300, num_val=40, num_test=40, seed=0)),
}

DIGESTS = {
    "mqar-compare": (
        "5b8888f21a6c4582ecbc0c17b5b6617475325cb451ae264d23df83fd3cb033a7",
        "883ccfa1a4fc055b68896045d2dea45f55510d9a3a82bff6272919197bd17e1d",
    ),
    "mqar-crowded": (
        "5c71482c5c54457505400144c38532ff90a216d6a6cc8af3d88ef45fadf013dc",
        "e333ae34dd168cbc3ce9e19ab239f4d855e8460db3750a757f30069ce8e88ebb",
    ),
    "mqar-default": (
        "d846fb4701ebafc874a0c9808c03c49f389762af0479049f2695df8290c3554f",
        "7e8785e469ab311da4b6a8289fe3370e44ca6a547d2d6d4eca44e1719452b03c",
    ),
    "needle": (
        "d904bf99fe41114e1300b90acd34b73ffdd84b042df4f45dac8fb2dce5771e13",
        "b82b1d791da4a524ebcb5223d3a22d9721d5dd5eea4d779f4c7e33a68dc44cf7",
    ),
    "multi_needle": (
        "c50ffeb3213ebb6d299014509c9bc0c71546a7e54acd0fcc5daed9ff71319d3e",
        "03628251a1775b571ff258846bcb87cb7c63aeb7fa6b947735390027bcc61433",
    ),
    "induction": (
        "8dfb681ef9abfdf9e10e0f729db73511b32e21c31eeb83beaead46ac58482d23",
        "05d6f0b1f4e0baa06e5b2d35220e0a8c75b6f9acd21dbbb8fea817d19ccdb261",
    ),
    "selective_copying": (
        "81614dd5fe62a14e9823802972efd8215b8a6b28b80cca4e82f9e74cbd4fc042",
        "922bb48488406aa38cc6c5b48cb13b26a89486ec8389df9525294e1c0a26b643",
    ),
}
"""name -> (sha256 of the train, val, test input_ids and labels; sha256 of the first epoch's training batches)."""


def split_datasets(dm):
    return getattr(dm, "datasets", None) or dm.splits


@pytest.mark.parametrize("name", list(SETTINGS))
def test_splits_and_training_order_are_unchanged(name):
    cls, kwargs = SETTINGS[name]
    dm = cls(**kwargs)
    dm.setup()
    splits = hashlib.sha256()
    for split in ("train", "val", "test"):
        data = split_datasets(dm)[split]
        splits.update(data.input_ids.numpy().tobytes())
        splits.update(data.labels.numpy().tobytes())
    order = hashlib.sha256()
    for batch in dm.train_dataloader():
        order.update(batch["input_ids"].numpy().tobytes())
    assert (splits.hexdigest(), order.hexdigest()) == DIGESTS[name]
