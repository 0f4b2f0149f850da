"""icl_regression's val / test / train tasks (and the first epoch's training order) are pinned by digest.

The constants were computed on the code before the regression task moved onto the seeded-splits base shared with
the token tasks: a refactor that changed one value of any split, or the order training reads them in, fails here."""

import hashlib

import pytest

from seqmix.train.data.icl_regression import ICLRegressionDataModule

SETTINGS = {
    "default": dict(num_train=300, num_val=40, num_test=30),
    "noisy": dict(dim=3, num_context=7, noise_std=0.5, x_range=2.0, batch_size=16, num_train=200, num_val=20,
                  num_test=25, seed=4),
}

DIGESTS = {
    "default": (
        "11047ce90c91cd5c77980dffc65cac21ee0ca01b6b2b3f40dddcee0aeda7444a",
        "3b0a0e77e9d0d94af426e67ace5d46e9d3a97e28170bfc89a2b5b0ae93e1835b",
    ),
    "noisy": (
        "5a262057f9471a8cd9c7e77218eee8b933a16998b8383a4891a94c0b267d1554",
        "6218c1c65feab0c82c5943ae888d84f75a817080e830120dd9af4aeeec8000b9",
    ),
}
"""name -> (sha256 of the train, val, test inputs and targets; sha256 of the first epoch's training batches)."""


@pytest.mark.parametrize("name", list(SETTINGS))
def test_splits_and_training_order_are_unchanged(name):
    dm = ICLRegressionDataModule(**SETTINGS[name])
    dm.setup()
    splits = hashlib.sha256()
    for split in ("train", "val", "test"):
        splits.update(dm.datasets[split].inputs.numpy().tobytes())
        splits.update(dm.datasets[split].targets.numpy().tobytes())
    order = hashlib.sha256()
    for batch in dm.train_dataloader():
        order.update(batch["inputs"].numpy().tobytes())
        order.update(batch["targets"].numpy().tobytes())
    assert (splits.hexdigest(), order.hexdigest()) == DIGESTS[name]
