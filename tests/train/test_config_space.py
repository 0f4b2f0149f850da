"""Property: every `seqmix fit` configuration either trains one step to a finite loss or is rejected up front with the
one-line SeqmixError `seqmix fit` prints (from the ValueErrors archs and train raise), naming a field it was given —
never another exception from deep inside torch.

Configurations are drawn over mixer, d_model, n_layers, heads / d_state, mlp_ratio, vocab_size, seq_len, key-value
pairs, batch size, lr and param_budget, each now and then from a set of bad values (zero, negative, nan, inf, tiny,
huge); a configuration with a bad value must be rejected. Each runs in-process through train.cli.cli, the code path
of `seqmix fit`, on MQAR at small shapes.
"""

import logging
import math
import re
import tempfile
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqmix import archs
from seqmix.train.cli import cli
from seqmix.train.errors import SeqmixError
from seqmix.train.module import LMTask, check_model_fits

NAMES = {  # field -> how an error message may name it
    "mixer": ("mixer",), "d_model": ("d_model",), "n_layers": ("n_layers",), "n_heads": ("n_heads",),
    "d_state": ("d_state",), "mlp_ratio": ("mlp_ratio",), "vocab_size": ("vocab_size",), "seq_len": ("seq_len",),
    "num_kv_pairs": ("num_kv_pairs",), "batch_size": ("batch_size",), "lr": ("lr",), "param_budget": ("param_budget",),
}
FLAGS = {
    "mixer": "--model.model.mixer", "d_model": "--model.model.d_model", "n_layers": "--model.model.n_layers",
    "mlp_ratio": "--model.model.mlp_ratio", "vocab_size": "--data.vocab_size", "seq_len": "--data.seq_len",
    "num_kv_pairs": "--data.num_kv_pairs", "batch_size": "--data.batch_size", "lr": "--model.lr",
    "param_budget": "--model.param_budget",
}


def field(draw, good, bad: list):
    """A good value, or (one time in twelve) one of `bad`; returns (value, is_bad)."""
    if bad and draw(st.sampled_from([False] * 11 + [True])):
        return draw(st.sampled_from(bad)), True
    return draw(good), False


@st.composite
def configs(draw):
    values, bad = {}, set()

    def put(name, good, bad_values):
        values[name], is_bad = field(draw, good, bad_values)
        if is_bad:
            bad.add(name)

    def usually(consistent, anything):  # a value that fits the others three times in four, else any good value
        return st.one_of(consistent, anything) if draw(st.sampled_from([False, False, False, True])) else consistent

    put("mixer", st.sampled_from(["attention", "linear_attention", "mamba"]), ["transformer"])
    put("d_model", st.integers(2, 40), [0, -8])
    put("n_layers", st.integers(1, 2), [0, -1])
    d = max(values["d_model"], 1)
    if values["mixer"] == "mamba":
        put("d_state", st.integers(1, 8), [0, -2])
    else:  # heads must divide d_model (and leave attention's rotary embedding an even head dim)
        fits = [h for h in range(1, 5) if d % h == 0 and (values["mixer"] != "attention" or (d // h) % 2 == 0)]
        put("n_heads", usually(st.sampled_from(fits or [1]), st.integers(1, 4)), [0, -2])
    put("mlp_ratio", st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0]), [-1.0, math.nan, math.inf])
    # MQAR needs vocab_size > seq_len >= 4 * num_kv_pairs
    put("seq_len", st.integers(4, 32), [0, -3])
    seq_len = max(values["seq_len"], 4)
    put("num_kv_pairs", usually(st.integers(1, seq_len // 4), st.integers(1, 4)), [0])
    put("vocab_size", usually(st.integers(seq_len + 1, 96), st.integers(8, 96)), [0, -5])
    put("batch_size", st.integers(1, 8), [0, -1])
    put("lr", st.floats(1e-5, 0.1), [0.0, -1e-3, math.nan, math.inf, -math.inf])
    # tiny budgets may or may not fit a model: not counted as bad; 0, negative and ~1e12 parameters are
    put("param_budget", st.sampled_from([None, None, None, None, 1, 100, 3_000, 20_000, 60_000]), [0, -5, 10**12])
    return values, bad


def argv(values: dict, root: str) -> list[str]:
    args = ["fit", "--data", "seqmix.train.data.mqar.MQARDataModule", "--data.num_train_examples", "16",
            "--data.num_val_examples", "8", "--data.num_test_examples", "8", "--wandb", "disabled",
            "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0", "--trainer.logger", "false",
            "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", root, "--model.warmup_steps", "0"]
    for name, flag in FLAGS.items():
        args += [flag, "null" if values[name] is None else str(values[name])]
    options = {k: values[k] for k in ("n_heads", "d_state") if k in values}
    return args + ["--model.model.mixer_args", "{" + ", ".join(f"{k}: {v}" for k, v in options.items()) + "}"]


def names_a_field(message: str, fields) -> bool:
    return any(re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", message) for f in fields for word in NAMES[f])


def outcome(values: dict) -> tuple[str, object]:
    """("ok", final train loss) or ("rejected", message) for one configuration, run as `seqmix fit` would run it."""
    with tempfile.TemporaryDirectory() as root, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            run = cli(argv(values, root))
        except SeqmixError as err:  # what `seqmix fit` prints as its one error line
            return "rejected", str(err)
        return "ok", float(run.trainer.callback_metrics["train/loss"])


@pytest.fixture(autouse=True)
def quiet():
    loggers = [logging.getLogger(name) for name in ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    yield
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs())
def test_every_config_trains_to_a_finite_loss_or_is_rejected_naming_a_field(config):
    values, bad = config
    kind, result = outcome(values)
    if kind == "ok":
        assert not bad, f"accepted a config with bad {sorted(bad)}: {values}"
        assert math.isfinite(result), (values, result)
    else:
        # the first problem found may be a combination of good values (4 * num_kv_pairs > seq_len) before a bad one
        assert result.startswith("seqmix fit: error: ") and "\n" not in result.strip(), result
        assert names_a_field(result, values), (values, sorted(bad), result)


BASE = {"mixer": "attention", "d_model": 16, "n_layers": 1, "n_heads": 2, "mlp_ratio": 1.0, "vocab_size": 40,
        "seq_len": 16, "num_kv_pairs": 2, "batch_size": 4, "lr": 1e-3, "param_budget": None}


def test_the_base_config_trains():
    kind, loss = outcome(BASE)
    assert kind == "ok" and math.isfinite(loss)


@pytest.mark.parametrize(
    ("name", "value"),
    [("d_model", 0), ("d_model", 15), ("n_layers", 0), ("n_heads", 0), ("n_heads", 3), ("mlp_ratio", -1.0),
     ("mlp_ratio", math.nan), ("mlp_ratio", math.inf), ("vocab_size", 0), ("vocab_size", 10), ("seq_len", 0),
     ("seq_len", 6), ("num_kv_pairs", 0), ("batch_size", 0), ("lr", 0.0), ("lr", -1.0), ("lr", math.nan),
     ("lr", math.inf), ("param_budget", 0), ("param_budget", 1), ("param_budget", 10**12), ("mixer", "transformer")],
)
def test_one_bad_field_is_named(name, value):
    kind, message = outcome({**BASE, name: value})
    assert kind == "rejected", (name, value)
    assert names_a_field(message, [name]), message


def test_a_task_with_too_few_distinct_examples_is_one_line_too():
    kind, message = outcome({**BASE, "vocab_size": 5, "seq_len": 4, "num_kv_pairs": 1})  # every split draws alike
    assert kind == "rejected" and "too few distinct examples" in message and names_a_field(message, ["vocab_size"])


def test_python_api_names_the_bad_value_too():
    """The checks behind the CLI (which refuses nan and inf as floats itself) hold for Python callers as well."""
    for bad in (math.nan, math.inf, -1.0):
        with pytest.raises(ValueError, match="mlp_ratio must be >= 0 and finite"):
            archs.ModelConfig(mlp_ratio=bad)
    for bad in (math.nan, math.inf, 0.0):
        with pytest.raises(ValueError, match="lr must be a finite number > 0"):
            LMTask(archs.ModelConfig(d_model=8, n_layers=1, vocab_size=16), lr=bad)
    with pytest.raises(ValueError, match="accepts no width up to 512 with these options: d_state must be a positive"):
        archs.match_params(archs.ModelConfig(mixer="mamba", mixer_args={"d_state": 0}), 5_000)
    with pytest.raises(ValueError, match=r"^param_budget=0: target must be a positive integer"):
        LMTask(archs.ModelConfig(d_model=8, n_layers=1, vocab_size=16), param_budget=0)


def test_a_model_larger_than_memory_is_refused_before_it_is_built():
    config = archs.ModelConfig(d_model=64, n_layers=2, vocab_size=1000)
    params = archs.non_embedding_params(config) + 1000 * 64
    check_model_fits(config, None, memory=16 * params)  # fits, AdamW state included
    with pytest.warns(UserWarning, match="training it with AdamW takes about"):
        check_model_fits(config, None, memory=8 * params)
    with pytest.raises(ValueError, match=r"d_model=64, n_layers=2, vocab_size=1000 gives a model of .* lower d_model"):
        check_model_fits(config, None, memory=2 * params)
    with pytest.raises(ValueError, match=r"^param_budget=5,000 gives a model .* lower param_budget$"):
        check_model_fits(config, 5_000, memory=2 * params)
