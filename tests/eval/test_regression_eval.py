"""`seqmix evaluate` on in-context regression: one GD step, its best step size, the Bayes-optimal reference, the
comparison of a model with GD (checked on the paper's construction, which is GD exactly), and the command line."""

import csv
import math

import lightning as L
import numpy as np
import pytest
import torch

from seqmix.archs import ModelConfig
from seqmix.train.data.icl_regression import ICLRegressionDataModule
from seqmix.train.regression import RegressionTask
from seqmix.train.tools.evaluate import evaluate_cli
from seqmix.train.tools.evaluate import regression as reg

LSA = dict(mixer="linear_attention", mixer_args={"n_heads": 1, "feature_map": "identity", "normalize": False},
           n_layers=1, mlp_ratio=0.0)


def data(**options) -> ICLRegressionDataModule:
    return ICLRegressionDataModule(**{"dim": 4, "num_context": 6, "num_train": 400, "num_val": 32, "num_test": 300,
                                      "batch_size": 32, **options})


def draw(dm, n=200, num_context=None, seed=0):
    batch = dm.generate(n, num_context, generator=torch.Generator().manual_seed(seed))
    return batch["inputs"].double(), batch["targets"].double()


def gd_lsa(d: int, eta: float, num_context: int) -> RegressionTask:
    """The paper's Proposition 1 weights in a RegressionTask: its prediction is one GD step of size eta."""
    task = RegressionTask(ModelConfig(d_model=d + 1, **LSA), d_in=d + 1, token_space=True).double()
    mixer = task.model.mixers[0]
    wq = torch.zeros(d + 1, d + 1, dtype=torch.float64)
    wq[:d, :d] = torch.eye(d)
    wv = torch.zeros(d + 1, d + 1, dtype=torch.float64)
    wv[d, d] = -1.0
    with torch.no_grad():
        mixer.qkv.weight.copy_(torch.cat([wq, wq, wv]))
        mixer.out.weight.zero_()
        mixer.out.weight[d, d] = eta / num_context
    return task.eval()


def test_one_gd_step_matches_a_loop_over_the_context():
    inputs, _ = draw(data(), 20)
    got = reg.gd_predictor(0.8)(inputs)
    for b in range(20):
        x, y, q = inputs[b, :-1, :-1], inputs[b, :-1, -1], inputs[b, -1, :-1]
        w = np.zeros(4)
        w -= 0.8 * sum((w @ xi.numpy() - yi.item()) * xi.numpy() for xi, yi in zip(x, y, strict=True)) / len(x)
        assert got[b].item() == pytest.approx(w @ q.numpy(), rel=1e-10)


def test_the_best_step_size_is_the_minimum_of_a_fine_scan():
    inputs, targets = draw(data(noise_std=0.2), 500)
    best = reg.best_step_size(inputs, targets)
    scan = np.linspace(0.0, 4.0, 4001)
    losses = [float((reg.gd_predictor(e)(inputs) - targets).square().mean()) for e in scan]
    assert abs(best - scan[int(np.argmin(losses))]) <= 1e-3
    assert reg.mse(reg.gd_predictor(best), inputs, targets) <= min(losses) + 1e-12
    with pytest.raises(ValueError, match="uninformative"):
        reg.best_step_size(torch.zeros(3, 4, 5), torch.ones(3))


def test_the_bayes_reference_interpolates_when_noiseless_and_is_the_posterior_mean_with_noise():
    inputs, targets = draw(data(), 50, num_context=9)  # N > d, no noise: w is recovered exactly
    assert torch.allclose(reg.bayes_predictor(0.0)(inputs), targets, atol=1e-8)
    dm = data(noise_std=0.5)
    inputs, _ = draw(dm, 10, num_context=3)
    got = reg.bayes_predictor(0.5)(inputs)
    for b in range(10):
        x, y, q = (t.numpy() for t in (inputs[b, :-1, :-1], inputs[b, :-1, -1], inputs[b, -1, :-1]))
        cov = np.linalg.inv(x.T @ x / 0.25 + np.eye(4))  # posterior of w ~ N(0, I) under y ~ N(x w, 0.25)
        assert got[b].item() == pytest.approx(q @ (cov @ x.T @ y / 0.25), rel=1e-8)


def test_the_sensitivity_of_one_gd_step_is_the_step_times_the_gd_direction():
    inputs, _ = draw(data(), 30)
    predictions, grad = reg.sensitivity(reg.gd_predictor(1.3), inputs)
    assert torch.allclose(grad, 1.3 * reg.gd_direction(inputs), atol=1e-12)
    assert torch.allclose(predictions, reg.gd_predictor(1.3)(inputs))


def test_the_papers_construction_coincides_with_gd_and_another_predictor_does_not():
    dm = data()
    inputs, targets = draw(dm, 300)
    numbers = reg.compare(reg.model_predictor(gd_lsa(4, 1.1, 6)), reg.gd_predictor(1.1), inputs, targets, batch_size=64)
    assert numbers["gap_mse"] < 1e-20 and numbers["sensitivity_cosine"] == pytest.approx(1.0, abs=1e-12)
    assert numbers["mse"] == pytest.approx(numbers["mse_reference"], rel=1e-10)
    other = reg.compare(reg.gd_predictor(-1.1), reg.gd_predictor(1.1), inputs, targets)
    assert other["sensitivity_cosine"] == pytest.approx(-1.0, abs=1e-9)  # the opposite step: opposite sensitivities
    g = 1.1 * (reg.gd_direction(inputs) * inputs[:, -1, :-1]).sum(-1)
    assert other["gap_mse"] == pytest.approx(float((2 * g).square().mean()), rel=1e-9)
    assert other["gap_abs"] == pytest.approx(float((2 * g).abs().mean()), rel=1e-9)


def test_the_untrained_twin_has_the_configuration_and_a_fresh_initialisation():
    task = RegressionTask(ModelConfig(d_model=5, **LSA), d_in=5, token_space=True)
    twin, again = reg.untrained_twin(task, 0), reg.untrained_twin(task, 0)
    assert twin.hparams == task.hparams and twin.d_in == 5
    inputs = torch.randn(3, 4, 5)
    assert torch.equal(twin(inputs), again(inputs)) and not torch.equal(twin(inputs), task(inputs))


def fit_lsa(dm, path, steps):
    torch.manual_seed(0)
    task = RegressionTask(ModelConfig(d_model=dm.token_dim, **LSA), d_in=dm.token_dim, token_space=True, lr=1e-2,
                          warmup_steps=0, weight_decay=0.0)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(task, dm)
    trainer.save_checkpoint(path)
    return task


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_writes_the_curve_and_the_gd_comparison_of_a_trained_lsa(tmp_path):
    dm = data(num_train=2000)
    fit_lsa(dm, tmp_path / "lsa.ckpt", steps=300)
    out = tmp_path / "out"
    summary = evaluate_cli(["--ckpt", str(tmp_path / "lsa.ckpt"), "--labels", "lsa", "--gd-comparison",
                            "--lengths", "2", "6", "12", "--num-examples", "200", "--out", str(out)])
    assert summary["task"] == "icl_regression" and summary["num_context"] == [2, 6, 12]
    assert {"context_curve.csv", "context_curve.png", "gd_comparison.csv"} <= set(summary["files"])
    curve = read_csv(out / "context_curve.csv")
    assert {r["model"] for r in curve} == {"lsa", reg.GD_LABEL, reg.BAYES_LABEL}
    assert sorted({int(r["num_context"]) for r in curve}) == [2, 6, 12]
    assert all(math.isclose(float(r["mse_ratio"]), float(r["mse"]) / dm.baseline_mse) for r in curve)
    bayes = {int(r["num_context"]): float(r["mse"]) for r in curve if r["model"] == reg.BAYES_LABEL}
    assert bayes[12] < 1e-6 < bayes[2]  # N > d = 4 and no noise: exact
    trained, untrained = read_csv(out / "gd_comparison.csv")
    assert (trained["weights"], untrained["weights"]) == ("trained", "untrained") and trained["n_tasks"] == "300"
    dm.setup()
    assert float(trained["step_size"]) == pytest.approx(reg.best_step_size(dm.datasets["train"].inputs,
                                                                           dm.datasets["train"].targets))
    assert float(trained["sensitivity_cosine"]) > 0.9 > float(untrained["sensitivity_cosine"])
    assert float(trained["gap_ratio"]) < float(untrained["gap_ratio"])


def test_token_task_options_and_mixed_checkpoints_are_rejected(tmp_path):
    dm = data()
    fit_lsa(dm, tmp_path / "lsa.ckpt", steps=1)
    base = ["--ckpt", str(tmp_path / "lsa.ckpt"), "--out", str(tmp_path / "out")]
    for extra, words in ((["--depths", "0.5"], "--depths concern token tasks"),
                         (["--kv-policy", "full"], "--kv-policy concern token tasks"),
                         (["--lengths", "0"], "must be >= 1")):
        with pytest.raises(ValueError, match=words):
            evaluate_cli([*base, *extra])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate_cli(["--ckpt", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "out")])


def test_gd_comparison_needs_regression_checkpoints_and_kinds_do_not_mix(tmp_path):
    from seqmix.train.data.mqar import MQARDataModule
    from seqmix.train.module import LMTask

    lm = LMTask(ModelConfig(d_model=16, n_layers=1, vocab_size=32))
    mqar = MQARDataModule(vocab_size=32, seq_len=16, num_kv_pairs=2, num_train_examples=16, num_val_examples=8,
                          batch_size=8)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)
    trainer.fit(lm, mqar)
    trainer.save_checkpoint(tmp_path / "lm.ckpt")
    fit_lsa(data(), tmp_path / "lsa.ckpt", steps=1)
    out = ["--out", str(tmp_path / "out")]
    with pytest.raises(ValueError, match="--gd-comparison compares in-context regression checkpoints"):
        evaluate_cli(["--ckpt", str(tmp_path / "lm.ckpt"), "--gd-comparison", *out])
    with pytest.raises(ValueError, match="mixes in-context regression checkpoints with token-task ones"):
        evaluate_cli(["--ckpt", str(tmp_path / "lsa.ckpt"), str(tmp_path / "lm.ckpt"), *out])
