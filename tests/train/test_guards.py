"""NonFiniteGuard: a NaN gradient or loss stops the run naming the step and parameter, or skips that step untouched."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger

from seqmix import archs
from seqmix.train.callbacks import FinalMetrics
from seqmix.train.data.mqar import MQARDataModule
from seqmix.train.guards import NonFiniteError, NonFiniteGuard, first_nonfinite
from seqmix.train.main import main
from seqmix.train.module import LMTask

from .run_helpers import write_mamba_config

warnings.filterwarnings("ignore", ".*does not have many workers.*")
PARAM = "model.blocks.1.mixer.A_log"


class PoisonGrad(Callback):
    """Puts a NaN into one parameter's gradient after backward at the given global steps (default: just `step`)."""

    def __init__(self, param: str = PARAM, step: int = 3, until: int | None = None, rank: int | None = None):
        self.param, self.step, self.until = param, step, until if until is not None else step
        self.rank = rank  # poison on this global rank only (None: every rank)

    def on_after_backward(self, trainer, pl_module):
        if self.step <= trainer.global_step <= self.until and self.rank in (None, trainer.global_rank):
            dict(pl_module.named_parameters())[self.param].grad.view(-1)[0] = float("nan")


class PoisonLoss(Callback):
    """Makes the first block's output NaN in the forward pass of global step `step` (so the loss is NaN)."""

    def __init__(self, step: int = 2):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        poison = trainer.global_step == self.step
        block = pl_module.model.blocks[0]
        block._poison_hook = block.register_forward_hook(lambda m, i, out: out * float("nan") if poison else None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        pl_module.model.blocks[0]._poison_hook.remove()


class Snapshots(Callback):
    """Every parameter before and after each training step, by the step's global step index."""

    def __init__(self):
        self.before, self.after = {}, {}

    @staticmethod
    def _copy(pl_module):
        return {n: p.detach().clone() for n, p in pl_module.named_parameters()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._step = trainer.global_step
        self.before[self._step] = self._copy(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after[self._step] = self._copy(pl_module)


def task() -> LMTask:
    return LMTask(archs.ModelConfig(mixer="mamba", d_model=16, n_layers=2, vocab_size=32, mlp_ratio=0), warmup_steps=0)


def data() -> MQARDataModule:
    return MQARDataModule(vocab_size=32, seq_len=16, num_kv_pairs=2, num_train_examples=128, num_val_examples=16,
                          batch_size=8)


def fit(tmp_path, *callbacks, max_steps: int = 6, logger=False) -> L.Trainer:
    trainer = L.Trainer(accelerator="cpu", max_steps=max_steps, logger=logger, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        limit_val_batches=0, callbacks=list(callbacks))
    trainer.fit(task(), datamodule=data())
    return trainer


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[n], b[n]) for n in a)


def test_first_nonfinite_names_the_first_bad_tensor_in_order():
    named = [("a", torch.ones(3)), ("b", torch.tensor([1.0, float("inf")])), ("c", torch.tensor([float("nan")]))]
    assert first_nonfinite(named) == ("b", 2)
    assert first_nonfinite(named[:1]) == (None, 0) and first_nonfinite([]) == (None, 0)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="action must be one of stop, skip, got 'ignore'"):
        NonFiniteGuard(action="ignore")
    with pytest.raises(ValueError, match="max_consecutive_skips must be a positive integer, got 0"):
        NonFiniteGuard(max_consecutive_skips=0)


def test_stop_names_step_and_parameter_and_does_not_apply_the_bad_step(tmp_path):
    snaps = Snapshots()
    logger = CSVLogger(tmp_path, name="run")
    with pytest.raises(NonFiniteError) as caught:
        fit(tmp_path, PoisonGrad(step=3), NonFiniteGuard(), snaps, FinalMetrics(), logger=logger)
    message = str(caught.value)
    assert f"non-finite gradient at global step 3 in {PARAM} " in message and "\n" not in message
    assert "--nonfinite.action skip" in message and str(tmp_path / "run" / "version_0") in message
    assert sorted(snaps.after) == [0, 1, 2, 3]  # stopped at the end of the bad step's batch
    assert not same(snaps.before[2], snaps.after[2]) and same(snaps.before[3], snaps.after[3])
    assert all(torch.isfinite(p).all() for p in snaps.after[3].values())
    # the results so far are there: final metrics (written at the end of fit) and the CSV log
    final = json.loads((tmp_path / "run" / "version_0" / "final_metrics.json").read_text())
    assert final["global_step"] == 4 and final["stage"] == "fit"
    assert (tmp_path / "run" / "version_0" / "metrics.csv").exists()


def test_skip_leaves_the_bad_step_untouched_warns_and_continues(tmp_path):
    snaps = Snapshots()
    with pytest.warns(UserWarning, match=f"non-finite gradient at global step 3 in {PARAM} .*skipped this optimizer step"):
        trainer = fit(tmp_path, PoisonGrad(step=3), NonFiniteGuard(action="skip"), snaps)
    assert trainer.global_step == 6 and sorted(snaps.after) == list(range(6))
    assert same(snaps.before[3], snaps.after[3])  # not even weight decay or momentum moved a parameter
    for step in (2, 4, 5):
        assert not same(snaps.before[step], snaps.after[step])
    guard = next(c for c in trainer.callbacks if isinstance(c, NonFiniteGuard))
    assert guard.skipped == [3]


def test_skip_stops_after_too_many_bad_steps_in_a_row(tmp_path):
    snaps = Snapshots()
    with pytest.warns(UserWarning, match="skipped"), pytest.raises(NonFiniteError) as caught:
        fit(tmp_path, PoisonGrad(step=1, until=10), NonFiniteGuard(action="skip", max_consecutive_skips=2), snaps)
    assert f"global step 3 in {PARAM}" in str(caught.value) and "3 bad steps in a row" in str(caught.value)
    assert sorted(snaps.after) == [0, 1, 2, 3] and same(snaps.after[0], snaps.after[3])


def test_a_nan_loss_is_caught_too(tmp_path):
    with pytest.raises(NonFiniteError, match=r"non-finite gradient at global step 2 in model\.embed\.weight .*loss nan"):
        fit(tmp_path, PoisonLoss(step=2), NonFiniteGuard())


def cli_config(tmp_path: Path, action: str, **poison) -> list[str]:
    path = write_mamba_config(
        tmp_path / "poison.yaml", tmp_path, max_steps=5, limit_val_batches=0,
        callbacks=[{"class_path": "tests.train.test_guards.PoisonGrad", "init_args": {"step": 2, **poison}}],
    )
    return ["fit", "-c", str(path), "--wandb", "disabled", "--nonfinite.action", action]


def run_main(args, capsys) -> tuple[int, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_seqmix_fit_stops_with_one_line_and_keeps_the_run_directory(tmp_path, capsys):
    code, err = run_main(cli_config(tmp_path, "stop"), capsys)
    assert code == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"seqmix fit: error: non-finite gradient at global step 2 in {PARAM} ")
    run = tmp_path / "mqar-mamba" / "version_0"
    assert str(run) in last
    final = json.loads((run / "final_metrics.json").read_text())
    assert final["global_step"] == 3 and "train/loss" in final["metrics"]
    assert (run / "metrics.csv").read_text().count("\n") >= 3 and (run / "config.yaml").exists()
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)  # the last good state, to resume
    assert checkpoint["global_step"] == 3 and all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())


def test_seqmix_fit_skip_runs_to_the_end(tmp_path, capsys):
    with pytest.warns(UserWarning, match=f"non-finite gradient at global step 2 in {PARAM}"):
        code, err = run_main(cli_config(tmp_path, "skip"), capsys)
    assert code == 0, err
    final = json.loads((tmp_path / "mqar-mamba" / "version_0" / "final_metrics.json").read_text())
    assert final["global_step"] == 5


@pytest.mark.slow
def test_under_ddp_every_process_stops_at_the_same_step(tmp_path):
    """Two CPU processes (gloo); rank 1's gradient is poisoned after backward, i.e. after DDP's all-reduce, so only
    rank 1 sees the NaN: the guard's decision is reduced across ranks, both stop together (no hang) and say why."""
    argv = [sys.executable, "-m", "seqmix.train.cli", *cli_config(tmp_path, "stop", rank=1), "--trainer.strategy", "ddp",
            "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, cwd=Path(__file__).parents[2])
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("seqmix fit: error: ")]
    assert len(lines) == 2, proc.stderr[-3000:]  # one from each process
    assert any(f"non-finite gradient at global step 2 in {PARAM}" in line for line in lines)
    assert any("non-finite loss or gradient on another process at global step 2" in line for line in lines)
    assert "Traceback" not in proc.stderr
    final = json.loads((tmp_path / "mqar-mamba" / "version_0" / "final_metrics.json").read_text())
    assert final["global_step"] == 3
