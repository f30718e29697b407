"""Run directories are owned (nmt.rundir): one training at a time, no run replaced or mixed, resumes that keep the
configuration; every refusal is one line and changes nothing."""

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nmt import NmtError, cache_folder, cli, rundir
from nmt.config import resolved
from nmt.translate import Translator
from tests.conftest import SMALL_DATES, compose_config, run_config


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder`` with its bytes and modification time (but the lock, which records its holder)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != rundir.LOCK}


def refused(args: list[str], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main(["train", *args])
    assert done.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_directory_in_use_is_refused_at_once_naming_the_process(tmp_path: Path) -> None:
    run = tmp_path / "run"
    rundir.lock(run)
    try:
        done = subprocess.run([sys.executable, "-m", "nmt", "train", *SMALL_DATES, f"hydra.run.dir={run}"],
                              capture_output=True, text=True, timeout=120)
    finally:
        rundir.unlock(run)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"nmt train: error: {run} is in use by process {os.getpid()} on {os.uname().nodename} since "
        f"{done.stderr.split(' since ')[1].split(':', 1)[0]}:"
        f"{done.stderr.split(' since ')[1].split(':', 1)[1].strip()}"]
    assert "wait for it to end" in done.stderr
    assert [p.name for p in run.iterdir()] == [rundir.LOCK]


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / rundir.LOCK).write_text("process 4194303 on this-host since 2026-11-25T10:00:00\n")
    with caplog.at_level(logging.INFO):
        rundir.lock(run)
    try:
        assert "taking over the lock of process 4194303" in caplog.text
        assert (run / rundir.LOCK).read_text().startswith(f"process {os.getpid()} ")
    finally:
        rundir.unlock(run)


def test_a_finished_run_is_not_trained_over_without_resume(dates_run: tuple[Path, dict],
                                                             capsys: pytest.CaptureFixture) -> None:
    run, _ = dates_run
    before = snapshot(run)
    line = refused([*SMALL_DATES, f"hydra.run.dir={run}"], capsys)
    assert line == (f"nmt train: error: {run} holds a run already (config.yaml, last.pt, best.pt, metrics.jsonl, "
                    f"checkpoints): continue it with train.resume=true, or move it into {run}/old-N and start anew "
                    f"with train.start_over=true")
    assert snapshot(run) == before
    assert not rundir._held  # a refused run holds no lock


def test_a_resume_that_changes_the_model_is_refused_naming_the_keys(dates_run: tuple[Path, dict],
                                                                     capsys: pytest.CaptureFixture) -> None:
    run, _ = dates_run
    before = snapshot(run)
    line = refused([*SMALL_DATES, f"hydra.run.dir={run}", "train.resume=true", "model.hidden_size=32",
                    "train.lr=0.1"], capsys)
    assert line.startswith(f"nmt train: error: {run} holds a run with another configuration")
    assert "model.hidden_size: 64 -> 32; train.lr: 0.003 -> 0.1" in line
    assert snapshot(run) == before


def test_a_resume_may_change_budgets_decoding_and_hardware(dates_run: tuple[Path, dict]) -> None:
    run, _ = dates_run
    cfg = run_config([*SMALL_DATES, "train.resume=true", "train.max_epochs=9", "train.patience=1",
                          "train.threads=1", "decode=beam5", "train.precision=auto"])
    resumed = rundir.resume_config(run, cfg)
    assert resumed.train.max_epochs == 9 and resumed.decode.beam_size == 5
    assert resumed.train.precision == OmegaConf.load(run / "config.yaml").train.precision != "auto"


def test_a_resume_may_not_move_the_end_of_a_cosine_schedule(tmp_path: Path) -> None:
    """Under ``train.schedule=cosine``, ``train.max_steps`` is where the learning rate reaches its end: a resume
    that changes it would change the training, so it is refused like a model change (other budgets still move)."""
    run = tmp_path / "run"
    cosine = [*SMALL_DATES, "train.schedule=cosine", "train.warmup=0", "train.max_steps=300"]
    run.mkdir()
    rundir.save_config(run_config(cosine), run)
    with pytest.raises(NmtError, match=r"not: train\.max_steps: 300 -> 600 \(train into another"):
        rundir.resume_config(run, run_config([*cosine, "train.max_steps=600", "train.resume=true"]))
    assert rundir.resume_config(run, run_config([*cosine, "train.max_epochs=9"])).train.max_epochs == 9


def test_start_over_moves_the_old_run_aside(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(dates_run[0], run)
    before = snapshot(run)
    rundir.claim(run, run_config([*SMALL_DATES, "train.start_over=true"]))
    try:
        assert sorted(p.name for p in run.iterdir()) == [rundir.LOCK, "old-1"]
        assert snapshot(run / "old-1") == {k: v for k, v in before.items()}
        assert not rundir.holds_run(run)
    finally:
        rundir.unlock(run)


def test_a_damaged_run_config_is_one_line(tmp_path: Path, dates_run: tuple[Path, dict]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    lines = (dates_run[0] / "config.yaml").read_text().splitlines(keepends=True)
    (run / "config.yaml").write_text("".join(lines[: len(lines) // 2]))  # cut short at a line's end
    with pytest.raises(NmtError, match=rf"^{run}/config.yaml is damaged or not an nmt run config: \S+: missing"):
        rundir.load_config(run)
    (run / "config.yaml").write_text("model:\n  cell: [gru\n")
    with pytest.raises(NmtError, match=rf"^cannot read run config {run}/config.yaml: line 3: expected ',' or ']'"):
        rundir.load_config(run)


def test_config_yaml_is_the_composed_config_resolved(dates_run: tuple[Path, dict]) -> None:
    """Key for key and value for value as written (an int stays an int), with the precision ``auto`` chose."""
    saved = (dates_run[0] / "config.yaml").read_text()
    expected = resolved(compose_config(SMALL_DATES))
    expected["train"]["precision"] = OmegaConf.create(saved).train.precision
    assert saved == OmegaConf.to_yaml(OmegaConf.create(expected))
    assert "max_ratio: 0\n" in saved and expected["data"]["cache_dir"] == cache_folder()


def test_an_older_run_loads_translates_and_resumes(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    """A run saved before ``decode.stop`` existed, its token cache elsewhere: it loads with the schema's default,
    writes back the YAML it holds, translates, and a resume may move the cache to today's folder."""
    run = tmp_path / "run"
    shutil.copytree(dates_run[0], run)
    old = OmegaConf.load(run / "config.yaml")
    del old.decode["stop"]
    old.data.cache_dir = str(tmp_path / "old_cache")
    OmegaConf.save(old, run / "config.yaml")
    loaded = rundir.load_config(run)
    assert loaded.decode.stop == "bound" and loaded.data.cache_dir == str(tmp_path / "old_cache")
    rundir.save_config(loaded, tmp_path)
    assert (tmp_path / "config.yaml").read_text() == (run / "config.yaml").read_text()
    assert Translator.from_run(run).translate(["Wednesday, 25 November 2026"])[0].text == "2026-11-25"
    resumed = rundir.resume_config(run, run_config([*SMALL_DATES, "train.resume=true"]))
    assert resumed.data.cache_dir == cache_folder() and resumed.decode.stop == "bound"
