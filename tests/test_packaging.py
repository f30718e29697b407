"""Installed like any package: a wheel built from the repository, named nmt-attention, carries the config groups,
the web page and the license, keeps the server's packages and tensorboard in extras, and the installed copy composes
and validates the default config from an unrelated folder."""

import email
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nmt

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
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], check=True,
                   capture_output=True, cwd=tmp_path)
    (wheel,) = wheels.glob("nmt_attention-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"nmt_attention-{nmt.__version__}.dist-info"
        meta = email.message_from_bytes(archive.read(f"{info}/METADATA"))
    configs = {f"nmt/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    static = {f"nmt/server/static/{p.name}" for p in (ROOT / "nmt" / "server" / "static").iterdir() if p.is_file()}
    assert "nmt/conf/config.yaml" in configs and "nmt/server/static/index.html" in static
    assert configs | static | {f"{info}/licenses/LICENSE", f"{info}/entry_points.txt"} <= names
    assert (meta["Name"], meta["Version"], meta["License-Expression"]) == ("nmt-attention", nmt.__version__, "MIT")
    assert {"serve", "tensorboard", "dev"} <= set(meta.get_all("Provides-Extra"))
    requires = meta.get_all("Requires-Dist")
    core = {re.match(r"[\w.-]+", r)[0] for r in requires if "extra ==" not in r}
    extras = {"fastapi": "serve", "uvicorn": "serve", "python-multipart": "serve", "tensorboard": "tensorboard",
              "ctranslate2": "ctranslate2"}
    assert "torch" in core and not core & set(extras), requires
    for package, extra in extras.items():
        assert any(r.startswith(package) and f'extra == "{extra}"' in r for r in requires), (package, requires)
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
    reported = subprocess.run([sys.executable, "-m", "nmt", "info", "--json"], capture_output=True, text=True,
                              cwd=elsewhere, env=env)
    assert reported.returncode == 0, reported.stderr[-2000:]
    assert json.loads(reported.stdout)["nmt"] == {"version": nmt.__version__, "distribution": "nmt-attention",
                                                  "location": str(site / "nmt")}
