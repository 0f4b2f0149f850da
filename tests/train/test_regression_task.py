"""RegressionTask (LMTask's loop, MSE at the query) and the CLI that takes it by class_path while every config without
one still builds LMTask."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from seqmix.archs import ModelConfig, RegressionModel
from seqmix.train.cli import cli
from seqmix.train.config_files import model_class_given
from seqmix.train.data.icl_regression import ICLRegressionDataModule
from seqmix.train.main import main
from seqmix.train.module import LMTask
from seqmix.train.regression import RegressionTask

REPO = Path(__file__).resolve().parents[2]
MQAR = str(REPO / "experiments" / "configs" / "mqar.yaml")
LSA_CONFIG = str(REPO / "experiments" / "reproduce" / "icl_regression" / "lsa.yaml")
MIXERS_CONFIG = str(REPO / "experiments" / "reproduce" / "icl_regression" / "mixers.yaml")
LSA = dict(mixer="linear_attention", mixer_args={"n_heads": 1, "feature_map": "identity", "normalize": False},
           n_layers=1, mlp_ratio=0.0)


def lsa_task(d: int, **options) -> RegressionTask:
    return RegressionTask(ModelConfig(d_model=d + 1, **LSA), d_in=d + 1, token_space=True, **options)


def test_predictions_are_the_models_at_the_last_position():
    task = RegressionTask(ModelConfig(mixer="attention", d_model=16, n_layers=1), d_in=5)
    batch = {"inputs": torch.randn(6, 4, 5), "targets": torch.randn(6)}
    assert isinstance(task.model, RegressionModel)
    out = task.predict_step(batch, 0)
    assert torch.equal(out["predictions"], task(batch["inputs"])[:, -1]) and torch.equal(out["targets"], batch["targets"])
    assert task.batch_tokens(batch) == 24


def test_a_budget_sizes_the_same_body_as_the_language_models():
    task = RegressionTask(ModelConfig(mixer="mamba", n_layers=2), param_budget=6000, d_in=11)
    lm = LMTask(ModelConfig(mixer="mamba", n_layers=2), param_budget=6000)
    assert task.config == lm.config and task.param_counts["non_embedding"] == lm.param_counts["non_embedding"]
    summary = task.model_summary()
    assert summary["params_total"] == sum(p.numel() for p in task.parameters()) and summary["d_in"] == 11
    assert task.hparams["d_in"] == 11 and task.hparams["token_space"] is False and task.hparams["param_budget"] == 6000


@pytest.mark.parametrize(("build", "words"), [
    (lambda: lsa_task(4, param_budget=3000), "leave param_budget null"),
    (lambda: RegressionTask(d_in=None), "the data has no token_dim"),
    (lambda: RegressionTask(d_in=0), "d_in must be a positive integer, got 0"),
    (lambda: RegressionTask(d_in=5, token_space="yes"), "token_space must be true or false"),
    (lambda: RegressionTask(ModelConfig(d_model=8, **LSA), d_in=5, token_space=True), "d_model must be d_in=5"),
])
def test_bad_settings_are_one_line_errors(build, words):
    with pytest.raises(ValueError) as err:
        build()
    assert words in str(err.value) and "\n" not in str(err.value)


def test_training_lowers_the_query_mse_and_the_checkpoint_rebuilds_the_model(tmp_path):
    torch.manual_seed(0)
    dm = ICLRegressionDataModule(dim=3, num_context=6, num_train=1024, num_val=256, num_test=64, batch_size=64)
    task = lsa_task(3, lr=1e-2, warmup_steps=0, weight_decay=0.0)
    trainer = L.Trainer(max_steps=150, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")
    before = trainer.validate(task, dm, verbose=False)[0]["val/loss"]
    val = dm.datasets["val"]
    with torch.no_grad():  # the logged epoch value is the MSE over the whole split
        assert before == pytest.approx(float((task.predict_query(val.inputs) - val.targets).square().mean()), rel=1e-5)
    trainer.fit(task, dm)
    after = trainer.validate(task, dm, verbose=False)[0]["val/loss"]
    assert after < 0.7 * before, (before, after)
    trainer.save_checkpoint(tmp_path / "lsa.ckpt")
    restored = RegressionTask.load_from_checkpoint(tmp_path / "lsa.ckpt")
    assert restored.token_space and restored.d_in == 4
    assert torch.equal(restored(val.inputs), task(val.inputs))


def test_the_model_class_is_given_by_a_class_path_on_the_command_line_or_in_a_config_file(tmp_path):
    assert not model_class_given(["fit", "-c", MQAR, "--model.lr", "0.1"], ["fit"])
    assert model_class_given(["--model", "seqmix.train.regression.RegressionTask"])
    assert model_class_given(["--model=seqmix.train.regression.RegressionTask"])
    assert model_class_given(["-c", LSA_CONFIG]) and model_class_given([f"--config={MIXERS_CONFIG}"])
    nested = tmp_path / "nested.yaml"
    nested.write_text(yaml.safe_dump({"fit": {"model": {"class_path": "seqmix.train.module.LMTask"}}}))
    assert model_class_given(["-c", str(nested)], ["fit"]) and not model_class_given(["-c", str(nested)])
    assert not model_class_given(["-c", str(tmp_path / "missing.yaml")])
    plain, chosen = tmp_path / "plain.yaml", tmp_path / "chosen.yaml"
    plain.write_text(yaml.safe_dump({"lr": 0.1, "model": {"d_model": 16}}))  # `--model FILE`: the group's options
    chosen.write_text(yaml.safe_dump({"class_path": "seqmix.train.regression.RegressionTask"}))
    assert not model_class_given(["--model", str(plain)]) and not model_class_given(["--model", "missing.yaml"])
    assert model_class_given(["--model", str(chosen)]) and model_class_given(["--model={class_path: a.B}"])


def test_the_cli_builds_a_regression_task_with_the_token_width_linked_from_the_data():
    built = cli(["-c", MIXERS_CONFIG, "--wandb", "disabled", "--data.dim", "4", "--model.model.mixer", "mamba"], run=False)
    assert type(built.model) is RegressionTask and built.model.d_in == 5 == built.datamodule.token_dim
    assert built.model.config.mixer_name == "mamba" and abs(built.model.param_counts["non_embedding"] - 20000) <= 400
    lsa = cli(["-c", LSA_CONFIG, "--wandb", "disabled"], run=False).model
    assert lsa.token_space and lsa.model.param_count() == 4 * 11 * 11


def test_configs_without_a_class_path_still_build_lm_task_with_options_under_model(capsys):
    built = cli(["-c", MQAR, "--wandb", "disabled", "--model.lr", "0.01"], run=False)
    assert type(built.model) is LMTask and built.model.hparams.lr == 0.01
    assert built.model.config.vocab_size == built.datamodule.vocab_size
    explicit = cli(["-c", MQAR, "--wandb", "disabled", "--model", "seqmix.train.module.LMTask"], run=False)
    assert type(explicit.model) is LMTask and explicit.model.config == built.model.config


def run_main(args, capsys) -> tuple[int, str]:
    code = 0
    try:
        main(args)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_regression_on_a_token_task_is_a_one_line_error(tmp_path, capsys):
    code, err = run_main(["fit", "-c", MQAR, "--model", "seqmix.train.regression.RegressionTask", "--wandb", "disabled",
                          "--trainer.default_root_dir", str(tmp_path)], capsys)
    assert code == 2 and "the data has no token_dim" in err and err.strip().splitlines()[-1].startswith("seqmix fit: error:")


def test_seqmix_fit_trains_the_lsa_and_writes_its_metrics(tmp_path, capsys):
    args = ["fit", "-c", LSA_CONFIG, "--wandb", "disabled", "--trainer.max_steps", "8", "--trainer.val_check_interval", "8",
            "--data.num_train", "64", "--data.num_val", "32", "--data.num_test", "16", "--data.batch_size", "16",
            "--trainer.default_root_dir", str(tmp_path), "--run_name", "lsa", "--trainer.enable_progress_bar", "false"]
    code, err = run_main(args, capsys)
    assert code == 0, err
    (path,) = tmp_path.glob("lsa/version_0/final_metrics.json")
    written = json.loads(path.read_text())
    assert written["global_step"] == 8 and written["model"]["token_space"] is True
    assert written["metrics"]["val/loss"] > 0 and written["metrics"]["perf/tokens_per_s"] > 0
    saved = yaml.safe_load((tmp_path / "lsa" / "version_0" / "config.yaml").read_text())
    assert saved["model"]["class_path"] == "seqmix.train.regression.RegressionTask"
