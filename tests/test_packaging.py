"""Installed like any package: a wheel built from the repository carries the config groups, and the installed
copy composes and validates the default config from an unrelated folder."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHECK = """
import nmt
from hydra import compose, initialize_config_dir
from nmt.config import CONF_DIR, validate
with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
    cfg = compose("config", overrides=["model=transformer_small", "tokenizer.vocab_size=200"])
run = validate(cfg)
print(nmt.__file__)
print(CONF_DIR)
print(run.model.arch, run.tokenizer.vocab_size)
"""


def test_a_wheel_installs_with_its_configs_and_runs_from_any_folder(tmp_path: Path) -> None:
    source, wheels, site, elsewhere = (tmp_path / name for name in ("source", "wheels", "site", "elsewhere"))
    elsewhere.mkdir()
    for name in ("nmt", "conf"):  # a copy of what the wheel is built from: the build leaves its files there
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], check=True,
                   capture_output=True, cwd=tmp_path)
    (wheel,) = wheels.glob("nmt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "nmt/conf/config.yaml" in names and "nmt/conf/experiment/multi30k_gru.yaml" in names
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, cwd=elsewhere, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    module, conf, model = done.stdout.splitlines()
    assert module == str(site / "nmt" / "__init__.py")  # the installed copy, not the checkout
    assert conf == str(site / "nmt" / "conf")
    assert model == "transformer 200"
    helped = subprocess.run([sys.executable, "-m", "nmt", "train", "--help"], capture_output=True, text=True,
                            cwd=elsewhere, env=env)
    assert helped.returncode == 0 and "multi30k_gru" in helped.stdout
