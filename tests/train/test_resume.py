"""A `seqmix fit` killed with SIGKILL mid-epoch and resumed from its last checkpoint ends exactly where an
uninterrupted run ends: the same parameters bit for bit, the same metrics, and the same examples in the same order."""

import json
import signal
import time
from collections import Counter

import pytest
import torch

from seqmix.train.data.mqar import MQARDataModule

from .run_helpers import PACE_ENV, RECORD_ENV, example_key, fit_command, logged, read_steps, run, start, write_config

STEPS, EVERY, VAL_EVERY, STEPS_PER_EPOCH = 20, 3, 10, 6  # 48 training examples in batches of 8
KILL_AT = 11  # killed as step 11 starts: the step-9 checkpoint (epoch 1, 3 of its 6 batches done) is the last one


def final_metrics(run_dir) -> dict:
    metrics = json.loads((run_dir / "final_metrics.json").read_text())["metrics"]
    return {k: v for k, v in metrics.items() if not k.startswith("perf/")}  # wall-clock and memory differ


@pytest.mark.slow
def test_a_fit_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tmp_path, STEPS, EVERY, VAL_EVERY)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    run_dir = killed / "mqar-attention"

    # the uninterrupted run and the one to kill, side by side
    ref = start(fit_command(config, f"--trainer.default_root_dir={reference}"), tmp_path / "reference.log",
                **{RECORD_ENV: str(tmp_path / "reference.steps")})
    victim = start(fit_command(config, f"--trainer.default_root_dir={killed}"), tmp_path / "killed.log",
                   **{RECORD_ENV: str(tmp_path / "killed.steps"), PACE_ENV: "0.3"})
    steps = tmp_path / "killed.steps"
    deadline = time.monotonic() + 240
    while not (steps.exists() and any(s == KILL_AT for s, _, _ in read_steps(steps))):
        assert victim.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the run to kill never reached its step"
        time.sleep(0.01)
    assert (run_dir / "version_0" / "checkpoints" / "epoch=1-step=9.ckpt").exists()  # a mid-epoch checkpoint
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL
    assert ref.wait(timeout=240) == 0, (tmp_path / "reference.log").read_text()[-3000:]

    last = run_dir / "version_0" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["global_step"] == 9 and saved["epoch"] == 1 and 9 % STEPS_PER_EPOCH != 0
    assert not list(last.parent.glob(".*tmp*"))  # no half-written file left by the kill either

    done = run(fit_command(config, f"--trainer.default_root_dir={killed}", "--ckpt_path", "last"),
               tmp_path / "resumed.log", **{RECORD_ENV: str(tmp_path / "resumed.steps")})
    log = (tmp_path / "resumed.log").read_text()
    assert done.returncode == 0 and f"resuming from {last}" in log
    assert "not resumable" not in log

    # the data: the killed run's steps up to its checkpoint, then the resumed run's, are the uninterrupted sequence
    expected = read_steps(tmp_path / "reference.steps")
    resumed = read_steps(tmp_path / "resumed.steps")
    assert [s for s, _, _ in expected] == list(range(1, STEPS + 1)) and resumed[0][0] == 10
    assert read_steps(steps, upto=9) + resumed == expected
    # ... and every epoch is the whole training set once: nothing seen twice, nothing skipped
    data = MQARDataModule(vocab_size=32, seq_len=16, num_kv_pairs=2, num_train_examples=48, num_val_examples=16,
                          batch_size=8)
    data.setup()
    train_set = Counter(example_key(row) for row in data.datasets["train"].input_ids)
    for epoch in range(STEPS // STEPS_PER_EPOCH):
        assert Counter(k for _, e, keys in expected if e == epoch for k in keys) == train_set

    # the model, optimizer and metrics
    a = torch.load(reference / "mqar-attention" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(run_dir / "version_1" / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == STEPS
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name
    for x, y in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values(), strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert final_metrics(run_dir / "version_1") == final_metrics(reference / "mqar-attention" / "version_0")
    losses = logged(reference / "mqar-attention" / "version_0" / "metrics.csv", "train/loss")
    resumed_losses = logged(run_dir / "version_1" / "metrics.csv", "train/loss")
    assert resumed_losses == {s: v for s, v in losses.items() if s >= 9}  # logged at 0-based steps: 9 is the 10th
