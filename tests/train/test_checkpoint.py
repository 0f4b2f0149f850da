"""seqmix.train.checkpoint: atomic checkpoint files, the default cadence and final save, exact in-process resume, the CLI's
checkpoint options and --ckpt_path last."""

import random
import warnings

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from seqmix.train.checkpoint import RESUME_KEY, AtomicCheckpointIO, ResumeState, RunCheckpoint, rng_state, set_rng_state
from seqmix.train.cli import cli
from seqmix.train.data.mqar import MQARDataModule
from seqmix.train.module import LMTask

from .run_helpers import example_key, write_config

warnings.filterwarnings("ignore", ".*does not have many workers.*")


def tiny_task() -> LMTask:
    return LMTask(dict(d_model=16, n_layers=1, vocab_size=32, mlp_ratio=0.0), lr=3e-3, warmup_steps=2)


def tiny_data(**kwargs) -> MQARDataModule:
    defaults = dict(vocab_size=32, seq_len=16, num_kv_pairs=2, num_train_examples=40, num_val_examples=8, batch_size=8)
    return MQARDataModule(**{**defaults, **kwargs})


class Record(Callback):
    """Keeps (global step, example keys) of every training batch; raises at `crash_at` to stand in for a crash."""

    def __init__(self, crash_at: int | None = None):
        self.steps: list[tuple[int, list[str]]] = []
        self.crash_at = crash_at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step + 1 == self.crash_at:
            raise RuntimeError("crash")
        self.steps.append((trainer.global_step + 1, [example_key(r) for r in batch["input_ids"]]))


def trainer(root, record: Callback, **kwargs) -> L.Trainer:
    options = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                   default_root_dir=root, num_sanity_val_steps=0, limit_val_batches=0, max_epochs=3)
    checkpoint = RunCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=3)
    return L.Trainer(callbacks=[record, checkpoint, ResumeState()], plugins=[AtomicCheckpointIO()],
                     **{**options, **kwargs})


def test_resume_mid_epoch_in_process_restores_data_position_and_parameters(tmp_path):
    # max_epochs (not max_steps) makes LMTask's configure_optimizers build the loaders before the checkpoint is
    # restored, the case where Lightning itself drops the loaders' saved state (Lightning issue #20550)
    L.seed_everything(0)
    full = Record()
    trainer(tmp_path / "full", full).fit(tiny_task(), tiny_data())  # 5 steps per epoch, 15 in all
    L.seed_everything(0)
    crashed = Record(crash_at=9)  # checkpoints at steps 3 and 6: step 6 is epoch 1, batch 1 of 5
    with pytest.raises(RuntimeError, match="crash"):
        trainer(tmp_path / "crashed", crashed).fit(tiny_task(), tiny_data())
    saved = tmp_path / "crashed" / "checkpoints" / "last.ckpt"
    assert torch.load(saved, weights_only=False)["global_step"] == 6
    L.seed_everything(0)
    resumed = Record()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", ".*not resumable.*")
        trainer(tmp_path / "resumed", resumed).fit(tiny_task(), tiny_data(), ckpt_path=saved)
    assert [s for s, _ in resumed.steps] == list(range(7, 16))
    assert crashed.steps[:6] + resumed.steps == full.steps
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_final_step_is_saved_even_off_the_cadence(tmp_path):
    t = trainer(tmp_path, Record(), max_epochs=None, max_steps=7)
    t.fit(tiny_task(), tiny_data())
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert len(names) == 2 and names[0].endswith("-step=7.ckpt") and names[1] == "last.ckpt"  # top-1 periodic, last
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 7


def test_a_crash_while_writing_a_checkpoint_never_leaves_a_truncated_file(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.arange(1000)}, path)
    real_save = torch.save

    def crash_midway(obj, f, *args, **kwargs):  # half the bytes reach the disk, then the process dies
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)
        f.flush()
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2, "w": torch.arange(1000)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1  # the previous checkpoint, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_rng_state_round_trips_through_a_checkpoint_dict(tmp_path):
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    state = rng_state()
    draws = torch.rand(3), random.random(), np.random.rand()
    torch.save({RESUME_KEY: {"rng": state}}, tmp_path / "x.ckpt")
    set_rng_state(torch.load(tmp_path / "x.ckpt", weights_only=True)[RESUME_KEY]["rng"])
    again = torch.rand(3), random.random(), np.random.rand()
    assert torch.equal(draws[0], again[0]) and draws[1:] == again[1:]


def test_cli_checkpoints_by_default_and_the_cadence_is_an_option(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tmp_path, max_steps=4, every=2, val_every=4)
    built = cli(["-c", str(config), "--wandb", "disabled", "--checkpoint.every_n_train_steps", "7"], run=False)
    (checkpoint,) = [c for c in built.trainer.callbacks if isinstance(c, RunCheckpoint)]
    assert checkpoint._every_n_train_steps == 7 and checkpoint.save_last is True
    assert any(isinstance(c, ResumeState) for c in built.trainer.callbacks)
    assert isinstance(built.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    off = cli(["-c", str(config), "--wandb", "disabled", "--trainer.enable_checkpointing", "false"], run=False)
    assert not off.trainer.checkpoint_callbacks


def test_cli_ckpt_path_last_with_nothing_saved_starts_afresh(tmp_path, capsys):
    config = write_config(tmp_path / "tiny.yaml", tmp_path, max_steps=2, every=2, val_every=2)
    done = cli(["fit", "-c", str(config), "--wandb", "disabled", "--ckpt_path", "last"])
    assert "starting afresh" in capsys.readouterr().err and done.trainer.global_step == 2
    again = cli(["fit", "-c", str(config), "--wandb", "disabled", "--ckpt_path", "last", "--trainer.max_steps", "3"])
    err = capsys.readouterr().err
    assert "resuming from" in err and "version_0/checkpoints/last.ckpt" in err and again.trainer.global_step == 3
