"""`seqmix fit` on two CPU processes (Lightning's DDP strategy, gloo) follows the single-process run with the same
global batch, and its checkpoint serves `seqmix evaluate` and decoding unchanged.

Tolerance: the two runs see the same examples at every step and, on MQAR (the same number of supervised tokens per
example), descend the same loss: the mean of the per-process mean losses is the global mean, and DDP averages the
gradients. They differ only by fp32 rounding: each process sums its half of the batch, gloo's all-reduce adds the two
halves and DDP divides by 2, where the single process sums the whole batch in one reduction, in another order. That
is ~1e-7 relative per gradient entry. Measured here: train/loss at most 4.8e-7 apart over the 24 Adam steps (two
float32 ulps at a loss of ~3.5), validation metrics identical. 1e-4 is a loose bound that still catches any
difference in data or averaging (a wrong shard or a wrong average moves the loss by ~1e-2 within a few steps).
"""

import pytest
import torch

from seqmix.train.module import LMTask
from seqmix.train.tools import evaluate

from .run_helpers import RECORD_ENV, fit_command, logged, read_steps, run, write_config

STEPS, VAL_EVERY, BATCH = 24, 12, 8
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny MQAR fit on one process (batch 8) and on two DDP processes (batch 4 each)."""
    root = tmp_path_factory.mktemp("ddp")
    config = write_config(root / "tiny.yaml", root, STEPS, every=VAL_EVERY, val_every=VAL_EVERY)
    single = fit_command(config, "--run_name", "single")
    ddp = fit_command(config, "--run_name", "ddp", "--trainer.strategy", "ddp", "--trainer.devices", "2",
                      "--trainer.accelerator", "cpu", "--data.init_args.batch_size", str(BATCH // 2))
    threads = {"OMP_NUM_THREADS": "1"}  # two processes on two cores
    run(single, root / "single.log", **threads, **{RECORD_ENV: str(root / "single.steps")})
    run(ddp, root / "ddp.log", timeout=600, **threads, **{RECORD_ENV: str(root / "ddp-{rank}.steps")})
    return root


@pytest.mark.slow
def test_ddp_on_cpu_follows_the_single_process_run(runs):
    single, ddp = runs / "single" / "version_0", runs / "ddp" / "version_0"
    # each step, the two processes' batches together are the single process's batch
    one = read_steps(runs / "single.steps")
    ranks = [read_steps(runs / f"ddp-{r}.steps") for r in (0, 1)]
    assert len(one) == len(ranks[0]) == len(ranks[1]) == STEPS
    for (step, epoch, keys), (s0, e0, k0), (s1, e1, k1) in zip(one, *ranks, strict=True):
        assert step == s0 == s1 and epoch == e0 == e1 and len(k0) == len(k1) == BATCH // 2
        assert sorted(keys) == sorted(k0 + k1) and not set(k0) & set(k1)
    # the loss curve and the (synced) validation metrics
    for name in ("train/loss", "train/acc", "val/loss", "val/acc"):
        a, b = logged(single / "metrics.csv", name), logged(ddp / "metrics.csv", name)
        assert a.keys() == b.keys() and a, name
        worst = max(abs(a[k] - b[k]) for k in a)
        assert worst <= TOLERANCE, (name, worst)
    assert "run directory" in (runs / "ddp.log").read_text()


@pytest.mark.slow
def test_a_ddp_checkpoint_serves_evaluate_and_decoding_unchanged(runs, tmp_path):
    single = torch.load(runs / "single" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
    path = runs / "ddp" / "version_0" / "checkpoints" / "last.ckpt"
    ddp = torch.load(path, weights_only=False)
    assert ddp["global_step"] == STEPS and ddp["state_dict"].keys() == single["state_dict"].keys()  # no DDP wrapper
    task = LMTask.load_from_checkpoint(path, map_location="cpu").eval()
    ids = torch.randint(1, 32, (2, 16), generator=torch.Generator().manual_seed(0))
    logits, states = task.model.prefill(ids[:, :-1])
    last, _ = task.model.step(ids[:, -1], states)
    with torch.no_grad():
        full = task(ids)
    torch.testing.assert_close(last, full[:, -1], rtol=1e-5, atol=1e-5)
    summary = evaluate.evaluate_cli(["--ckpt", str(path), "--lengths", "16", "24", "--num-examples", "8",
                             "--out", str(tmp_path / "eval")])
    assert summary["task"] == "mqar" and summary["runs"][0]["train_len"] == 16
