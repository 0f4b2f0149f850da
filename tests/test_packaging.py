"""Packaging: seqmix installs only the `seqmix` namespace, so it neither shadows nor is shadowed by other
distributions' top-level modules (Hugging Face's `kernels` package among them)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("archs", "kernels", "train")


def _package_folders() -> set[str]:
    return {"seqmix." + ".".join(p.parent.relative_to(REPO).parts)
            for folder in FOLDERS for p in (REPO / folder).rglob("__init__.py")}


def test_every_package_folder_is_installed_under_seqmix():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {f"seqmix.{f}": f for f in FOLDERS}
    assert set(config["packages"]) == _package_folders()


@pytest.mark.slow
def test_the_wheel_holds_only_the_seqmix_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("seqmix-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"seqmix", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert "seqmix/__init__.py" not in names  # a namespace package: nothing of ours at the top level
    for package in _package_folders():
        assert package.replace(".", "/") + "/__init__.py" in names


def test_hugging_face_kernels_and_seqmix_import_side_by_side(tmp_path):
    """Hugging Face's `kernels` (a dev dependency, so CI installs it) owns the name `kernels`; seqmix's Mamba still runs."""
    code = (
        "import kernels, torch\n"
        "import seqmix.kernels\n"
        "from seqmix.archs import Mamba\n"
        "assert kernels is not seqmix.kernels and 'site-packages' in kernels.__file__, kernels.__file__\n"
        "assert hasattr(kernels, 'get_kernel') and not hasattr(kernels, 'selective_scan')\n"
        "y = Mamba(16, d_state=4)(torch.randn(1, 5, 16))\n"
        "print('ok', tuple(y.shape))\n"
    )
    # -P and a neutral working directory: the repository root (which holds a folder named kernels) is not on sys.path
    proc = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok (1, 5, 16)"
