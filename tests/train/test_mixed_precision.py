"""seqmix fit with bf16 autocast on CPU: Mamba trains, its A_log stays fp32, the loss is finite."""

import json

import torch
import yaml

from train.cli import cli


def test_fit_bf16_mixed_runs_for_mamba(tmp_path):
    config = {
        "trainer": {"max_steps": 2, "limit_val_batches": 1, "val_check_interval": 2, "check_val_every_n_epoch": None,
                    "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": str(tmp_path),
                    "log_every_n_steps": 1},
        "model": {"model": {"mixer": "mamba", "d_model": 16, "n_layers": 2, "mlp_ratio": 0.0}, "warmup_steps": 0},
        "data": {"class_path": "train.data.mqar.MQARDataModule",
                 "init_args": {"vocab_size": 32, "seq_len": 16, "num_kv_pairs": 2, "num_train_examples": 64,
                               "num_val_examples": 16, "batch_size": 8}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    run = cli(["fit", "-c", str(path), "--wandb", "disabled", "--trainer.precision", "bf16-mixed"])
    assert run.trainer.precision == "bf16-mixed" and run.trainer.global_step == 2
    assert all(block.mixer.A_log.dtype == torch.float32 for block in run.model.model.blocks)
    (final,) = tmp_path.glob("mqar-mamba/version_*/final_metrics.json")
    metrics = json.loads(final.read_text())["metrics"]
    assert isinstance(metrics["train/loss"], float) and isinstance(metrics["val/loss"], float)  # finite ("nan" if not)
