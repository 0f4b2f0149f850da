"""seqmix fit with bf16 autocast on CPU: Mamba trains, its A_log stays fp32, the loss is finite."""

import json

import torch

from seqmix.train.cli import cli

from .run_helpers import write_mamba_config


def test_fit_bf16_mixed_runs_for_mamba(tmp_path):
    path = write_mamba_config(tmp_path / "tiny.yaml", tmp_path, max_steps=2, limit_val_batches=1, val_check_interval=2,
                              check_val_every_n_epoch=None)
    run = cli(["fit", "-c", str(path), "--wandb", "disabled", "--trainer.precision", "bf16-mixed"])
    assert run.trainer.precision == "bf16-mixed" and run.trainer.global_step == 2
    assert all(block.mixer.A_log.dtype == torch.float32 for block in run.model.model.blocks)
    (final,) = tmp_path.glob("mqar-mamba/version_*/final_metrics.json")
    metrics = json.loads(final.read_text())["metrics"]
    assert isinstance(metrics["train/loss"], float) and isinstance(metrics["val/loss"], float)  # finite ("nan" if not)
