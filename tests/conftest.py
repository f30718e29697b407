"""Shared fixtures: configs composed with Hydra's compose API, and one small date model trained per session.

The suite runs in parallel (pytest-xdist, ``-n auto --dist loadfile`` in pyproject.toml): one worker per core, each
training with one thread (the small models of the tests run as fast on one thread as on two), each test file on one
worker (so that a module's fixtures are built once). The learning tests are collected first, so that the longest
jobs start while the short ones fill in around them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from nmt.config import CONF_DIR, RunConfig, validate
from nmt.train import train

if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker of a parallel run has one core: so have the nmt it starts
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# The real Multi30k, for the tests that read it: the folder NMT_MULTI30K names, or none (the tests skip, saying so).
_MULTI30K_ENV = os.environ.get("NMT_MULTI30K", "")
MULTI30K = Path(_MULTI30K_ENV).expanduser() if _MULTI30K_ENV else None
needs_multi30k = pytest.mark.skipif(
    MULTI30K is None or not (MULTI30K / "train.de").is_file(),
    reason=(f"no Multi30k in NMT_MULTI30K={_MULTI30K_ENV}" if _MULTI30K_ENV else "NMT_MULTI30K is not set")
    + ": point it at the Multi30k folder (`nmt data multi30k` downloads one)")

# A shrunken default recipe: fewer sentences and epochs, one thread (each test worker has a core), seed 1 (the
# bars of the tests that train it hold for seeds 1, 2 and 3).
SMALL_DATES = ["data.sizes.train=10000", "data.sizes.dev=300", "data.sizes.test=500", "train.max_epochs=3",
               "train.threads=1", "train.log_every=20", "seed=1"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The learning tests (``slow``) first, in their order; then the rest."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """The training config as `nmt train OVERRIDES` would compose it."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides or [])


def run_config(overrides: list[str] | None = None) -> RunConfig:
    """The typed config `nmt train OVERRIDES` would train with (its data files unchecked)."""
    return validate(compose_config(overrides), check_files=False)


@pytest.fixture(scope="session", autouse=True)
def _nmt_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Converted and tokenised data (data.cache_dir) go to a temporary folder, not ~/.cache/nmt."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NMT_CACHE", str(tmp_path_factory.mktemp("nmt_cache")))
        yield


@pytest.fixture(scope="session")
def dates_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A Bahdanau GRU trained on the date task (about 20 s): its run directory and its test scores."""
    run_dir = tmp_path_factory.mktemp("dates_run")
    result = train(compose_config(SMALL_DATES), run_dir)
    return run_dir, result


@pytest.fixture(scope="session")
def transformer_dates_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Transformer, 160 updates on 10,000 dates (about 13 s on one thread): half-trained (test exact match
    near 40%), so that its searches meet close calls where a wrong weight would show."""
    run_dir = tmp_path_factory.mktemp("transformer_dates_run")
    train(compose_config(["model=transformer_small", "model.dropout=0.0", "train.max_epochs=2", "train.max_steps=160",
                          "train.schedule=cosine", "train.warmup=30", "train.threads=1", "data.sizes.train=10000",
                          "data.sizes.dev=100", "data.sizes.test=300", "train.test=false", "seed=1"]), run_dir)
    return run_dir


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
