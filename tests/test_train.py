"""Training end to end on the date task: it learns, and the run directory holds what it promises."""

import json
import logging
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from nmt.train import CONF_DIR, train
from tests.conftest import SMALL_DATES, compose_config


def test_the_date_model_learns(dates_run: tuple[Path, dict]) -> None:
    """A few epochs of the shrunken default recipe translate held-out dates almost perfectly."""
    _, result = dates_run
    assert result["exact"] >= 97.0
    assert result["bleu"] >= 95.0


def test_run_directory_contents(dates_run: tuple[Path, dict]) -> None:
    run_dir, result = dates_run
    for name in ("config.yaml", "spm.joint.model", "best.pt", "last.pt", "metrics.jsonl", "test.hyp",
                 "data/train.txt", "data/test.iso"):
        assert (run_dir / name).is_file(), name
    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert cfg.model.attention == "bahdanau" and cfg.train.max_epochs == 3
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    dev = [r for r in records if r["split"] == "dev"]
    assert len(dev) == 3 and all({"loss", "ppl", "bleu", "chrf", "exact", "step"} <= r.keys() for r in dev)
    assert dev[-1]["loss"] < dev[0]["loss"]
    assert any(r["split"] == "train" and r["tokens_per_s"] > 0 for r in records)
    (test,) = [r for r in records if r["split"] == "test"]
    assert test["exact"] == result["exact"]
    assert len((run_dir / "test.hyp").read_text().splitlines()) == 500
    best = torch.load(run_dir / "best.pt", weights_only=True)
    assert best["progress"]["best"] == max(r["exact"] for r in dev)


def test_resuming_a_finished_run_does_nothing(dates_run: tuple[Path, dict], caplog: pytest.LogCaptureFixture
                                              ) -> None:
    run_dir, result = dates_run
    before = (run_dir / "best.pt").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        again = train(compose_config([*SMALL_DATES, "train.resume=true"]), run_dir)
    assert again == result
    assert (run_dir / "best.pt").stat().st_mtime_ns == before
    assert "finished already" in caplog.text


@pytest.mark.parametrize("group", ["data", "tokenizer", "model", "train", "decode"])
def test_every_config_option_composes(group: str) -> None:
    options = sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))
    assert options
    for option in options:
        cfg = compose_config([f"{group}={option}"])
        assert OmegaConf.to_container(cfg, resolve=True)[group]


def test_a_wrong_key_is_refused_before_training() -> None:
    with pytest.raises(Exception, match="hidden_sise"):
        compose_config(["model.hidden_sise=5"])
