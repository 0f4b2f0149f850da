"""LMTask(init_from=...): a run starts from another run's weights, with fresh optimiser and schedule; bad paths fail."""

import warnings

import lightning as L
import pytest
import torch

from seqmix import archs
from seqmix.train.data.mqar import MQARDataModule
from seqmix.train.module import LMTask

warnings.filterwarnings("ignore", ".*does not have many workers.*")
TINY = archs.ModelConfig(d_model=16, n_layers=1, vocab_size=32)


def fit(task: LMTask, root, steps: int) -> L.Trainer:
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
                        num_sanity_val_steps=0, limit_val_batches=0)
    data = MQARDataModule(vocab_size=32, seq_len=16, num_kv_pairs=2, num_train_examples=64, num_val_examples=24,
                          batch_size=8)
    trainer.fit(task, datamodule=data)
    return trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("warm")
    torch.manual_seed(0)
    task = LMTask(TINY, lr=1e-2, warmup_steps=1)
    trainer = fit(task, root, steps=3)
    trainer.save_checkpoint(root / "trained.ckpt")
    return root / "trained.ckpt", {k: v.clone() for k, v in task.model.state_dict().items()}


def test_weights_come_from_the_checkpoint_and_training_restarts(trained, tmp_path):
    path, weights = trained
    torch.manual_seed(1)  # another draw than the trained run's: only the copy can make them equal
    warm = LMTask(TINY, lr=1e-2, warmup_steps=1, init_from=str(path))
    for name, value in warm.model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert not torch.equal(LMTask(TINY).model.state_dict()["embed.weight"], weights["embed.weight"])
    trainer = fit(warm, tmp_path, steps=2)
    assert trainer.global_step == 2  # counted from zero: the step count is not taken over
    assert trainer.optimizers[0].param_groups[0]["lr"] < 1e-2  # a schedule of its own, past its one warmup step


def test_init_from_is_not_kept_so_its_checkpoints_load_without_the_file(trained, tmp_path):
    path, _ = trained
    warm = LMTask(TINY, init_from=str(path))
    assert "init_from" not in warm.hparams
    trainer = fit(warm, tmp_path, steps=1)
    trainer.save_checkpoint(tmp_path / "warm.ckpt")
    path.rename(path.with_suffix(".moved"))
    try:
        loaded = LMTask.load_from_checkpoint(tmp_path / "warm.ckpt")
    finally:
        path.with_suffix(".moved").rename(path)
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, warm.model.state_dict()[name]), name


def test_another_model_is_refused_naming_the_difference(trained):
    path, _ = trained
    with pytest.raises(ValueError, match=r"init_from=.*another model \(d_model: checkpoint 16 vs this run 24\)"):
        LMTask(archs.ModelConfig(d_model=24, n_layers=1, vocab_size=32), init_from=str(path))


@pytest.mark.parametrize("content", [None, b"not a checkpoint"])
def test_a_missing_or_foreign_file_is_one_line(tmp_path, content):
    path = tmp_path / "x.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=r"^init_from='.*x\.ckpt' is not a (file|seqmix checkpoint)"):
        LMTask(TINY, init_from=str(path))
