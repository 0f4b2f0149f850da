"""The private Lightning / jsonargparse API seqmix uses lives in train/private_api.py only, and exists in the
installed versions, which are inside the range pyproject.toml supports."""

import re
from importlib.metadata import version
from pathlib import Path

import pytest
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import ModelCheckpoint
from packaging.requirements import Requirement
from packaging.version import Version

from seqmix.train import private_api

ROOT = Path(__file__).resolve().parents[2]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def test_pyproject_pins_the_range_the_adapter_is_written_for():
    deps = {Requirement(d).name: Requirement(d).specifier for d in
            tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    for name, spec in private_api.SUPPORTED.items():
        assert str(deps[name]) == str(Requirement(f"{name}{spec}").specifier), name
        assert Version(version(name)) in deps[name], f"installed {name} {version(name)} is outside {deps[name]}"


def test_every_private_name_the_adapter_uses_exists():
    for method in private_api.CHECKPOINT_METHODS:
        assert callable(getattr(ModelCheckpoint, method, None)), method
    parser = ArgumentParser(prog="probe")
    sub = ArgumentParser(prog="probe run")
    sub.add_argument("--steps", type=int)
    parser.add_subcommands().add_subcommand("run", sub)
    assert set(private_api.subcommand_parsers(parser)) == {"run"}
    assert "--steps" in private_api.option_strings(sub)
    assert private_api.subcommand_parsers(sub) == {}


def test_no_other_module_touches_private_lightning_api():
    private = re.compile(r"super\(\)\._[a-z]|\._get\(|_subcommands_action|\._actions\b|"
                         + "|".join(re.escape(m) for m in private_api.CHECKPOINT_METHODS))
    offenders = [f"{path.relative_to(ROOT)}:{i}" for folder in ("train", "archs", "kernels")
                 for path in sorted((ROOT / folder).rglob("*.py")) if path.name != "private_api.py"
                 for i, line in enumerate(path.read_text().splitlines(), 1) if private.search(line)]
    assert offenders == []
