"""Progress in a non-terminal is a line every N steps (and after validation), never a redrawn bar."""

import io
import warnings

import lightning as L
import pytest
from lightning.pytorch.callbacks import TQDMProgressBar

from seqmix import archs
from seqmix.train.data.mqar import MQARDataModule
from seqmix.train.module import LMTask
from seqmix.train.progress import LineProgress, progress_bar

warnings.filterwarnings("ignore", ".*does not have many workers.*")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_bar_anything_else_lines():
    assert isinstance(progress_bar(FakeTerminal()), TQDMProgressBar)
    lines = progress_bar(io.StringIO(), every_n_steps=7)
    assert isinstance(lines, LineProgress) and lines.every_n_steps == 7


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_interval_is_rejected(bad):
    with pytest.raises(ValueError, match=f"every_n_steps must be a positive integer, got {bad!r}"):
        LineProgress(bad)


def test_a_tiny_run_logs_one_line_every_n_steps_and_after_validation(tmp_path):
    stream = io.StringIO()
    data = MQARDataModule(vocab_size=32, seq_len=16, num_kv_pairs=2, num_train_examples=96, num_val_examples=16,
                          batch_size=8)
    task = LMTask(archs.ModelConfig(mixer="attention", d_model=16, n_layers=1, vocab_size=32))
    trainer = L.Trainer(accelerator="cpu", max_steps=23, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, default_root_dir=tmp_path, val_check_interval=10,
                        num_sanity_val_steps=1, callbacks=[LineProgress(every_n_steps=5, stream=stream)])
    trainer.fit(task, datamodule=data)
    lines = stream.getvalue().splitlines()
    steps = [line.split()[1] for line in lines if line.startswith("step ")]
    assert steps == ["5/23", "10/23", "15/23", "20/23", "23/23"]
    assert [line.split()[3] for line in lines if line.startswith("validation")] == ["10:", "22:"]  # batch 10 of each 12
    assert all("train/loss=" in line for line in lines if line.startswith("step "))
    assert "\r" not in stream.getvalue() and len(stream.getvalue()) < 5_000
