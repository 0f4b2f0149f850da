"""Every task config trains through the `seqmix` CLI with a mixer config, and its checkpoint feeds `seqmix evaluate`."""

import json
from pathlib import Path

import pytest

from seqmix.train.cli import cli
from seqmix.train.tools import evaluate

CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"
SYNTHETIC = ["--data.num_train=32", "--data.num_val=8", "--data.num_test=8", "--data.batch_size=8", "--data.seq_len=64"]


@pytest.mark.parametrize(
    "config, mixer, task",
    [
        ("needle", "attention", "needle"),
        ("multi_needle", "linear_attention", "multi_needle"),
        ("induction", "mamba", "induction"),
        ("selective_copying", "attention", "selective_copying"),
        ("induction", "mamba2", "induction"),
    ],
)
def test_task_config_trains_and_its_checkpoint_is_evaluated(config, mixer, task, tmp_path):
    run = cli(["fit", "-c", str(CONFIGS / f"{config}.yaml"), "-c", str(CONFIGS / "mixers" / f"{mixer}.yaml"), *SYNTHETIC,
               "--trainer.max_steps=1", "--trainer.limit_val_batches=1", "--trainer.val_check_interval=1",
               "--trainer.enable_progress_bar=false", "--wandb=disabled", f"--trainer.default_root_dir={tmp_path}"])
    assert run.model.config.mixer_name == mixer and run.model.config.vocab_size == run.datamodule.vocab_size
    ckpt = Path(run.trainer.log_dir) / "checkpoints" / "last.ckpt"
    summary = evaluate.evaluate_cli(["--ckpt", str(ckpt), "--lengths", "64", "128", "--num-examples", "2",
                             "--out", str(tmp_path / "eval")])
    assert summary["task"] == task  # told by the data class the CLI recorded in the checkpoint
    assert summary["runs"][0]["train_len"] == 64 and summary["runs"][0]["mixer"] == mixer


def test_text_config_logs_bits_per_byte(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("seqmix compares sequence mixers at matched size.\n" * 400)
    run = cli(["fit", "-c", str(CONFIGS / "text.yaml"), "-c", str(CONFIGS / "mixers" / "attention.yaml"),
               f"--data.paths={corpus}", f"--data.cache_dir={tmp_path / 'cache'}", "--data.seq_len=32",
               "--data.batch_size=4", "--data.train_windows=8", "--data.max_eval_windows=4", "--model.param_budget=20000",
               "--trainer.max_steps=2", "--trainer.val_check_interval=2", "--trainer.enable_progress_bar=false",
               "--wandb=disabled", f"--trainer.default_root_dir={tmp_path}"])
    metrics = json.loads((Path(run.trainer.log_dir) / "final_metrics.json").read_text())["metrics"]
    assert metrics["val/bpb"] > 0 and metrics["val/ppl"] > 1
    assert (Path(run.trainer.log_dir) / "checkpoints" / "last.ckpt").exists()
