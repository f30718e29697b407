"""Run directories (nmt.rundir.RunDir) name their files in one place and read back what training writes; they are
owned: one training at a time, no run replaced or mixed, resumes that keep the configuration; every refusal is one
line and changes nothing."""

import json
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
from nmt.rundir import RunDir
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
    RunDir(run).lock()
    try:
        done = subprocess.run([sys.executable, "-m", "nmt", "train", *SMALL_DATES, f"hydra.run.dir={run}"],
                              capture_output=True, text=True, timeout=120)
    finally:
        RunDir(run).unlock()
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
        RunDir(run).lock()
    try:
        assert "taking over the lock of process 4194303" in caplog.text
        assert (run / rundir.LOCK).read_text().startswith(f"process {os.getpid()} ")
    finally:
        RunDir(run).unlock()


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
    resumed = RunDir(run).resume_config(cfg)
    assert resumed.train.max_epochs == 9 and resumed.decode.beam_size == 5
    assert resumed.train.precision == OmegaConf.load(run / "config.yaml").train.precision != "auto"


def test_a_resume_may_not_move_the_end_of_a_cosine_schedule(tmp_path: Path) -> None:
    """Under ``train.schedule=cosine``, ``train.max_steps`` is where the learning rate reaches its end: a resume
    that changes it would change the training, so it is refused like a model change (other budgets still move)."""
    run = RunDir(tmp_path / "run")
    cosine = [*SMALL_DATES, "train.schedule=cosine", "train.warmup=0", "train.max_steps=300"]
    run.path.mkdir()
    run.save_config(run_config(cosine))
    with pytest.raises(NmtError, match=r"not: train\.max_steps: 300 -> 600 \(train into another"):
        run.resume_config(run_config([*cosine, "train.max_steps=600", "train.resume=true"]))
    assert run.resume_config(run_config([*cosine, "train.max_epochs=9"])).train.max_epochs == 9


def test_start_over_moves_the_old_run_aside(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(dates_run[0], run)
    before = snapshot(run)
    RunDir(run).claim(run_config([*SMALL_DATES, "train.start_over=true"]))
    try:
        assert sorted(p.name for p in run.iterdir()) == [rundir.LOCK, "old-1"]
        assert snapshot(run / "old-1") == {k: v for k, v in before.items()}
        assert not RunDir(run).holds_run()
    finally:
        RunDir(run).unlock()


def test_a_damaged_run_config_is_one_line(tmp_path: Path, dates_run: tuple[Path, dict]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    lines = (dates_run[0] / "config.yaml").read_text().splitlines(keepends=True)
    (run / "config.yaml").write_text("".join(lines[: len(lines) // 2]))  # cut short at a line's end
    with pytest.raises(NmtError, match=rf"^{run}/config.yaml is damaged or not an nmt run config: \S+: missing"):
        RunDir(run).config()
    (run / "config.yaml").write_text("model:\n  cell: [gru\n")
    with pytest.raises(NmtError, match=rf"^cannot read run config {run}/config.yaml: line 3: expected ',' or ']'"):
        RunDir(run).config()


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
    loaded = RunDir(run).config()
    assert loaded.decode.stop == "bound" and loaded.data.cache_dir == str(tmp_path / "old_cache")
    RunDir(tmp_path).save_config(loaded)
    assert (tmp_path / "config.yaml").read_text() == (run / "config.yaml").read_text()
    assert Translator.from_run(run).translate(["Wednesday, 25 November 2026"])[0].text == "2026-11-25"
    resumed = RunDir(run).resume_config(run_config([*SMALL_DATES, "train.resume=true"]))
    assert resumed.data.cache_dir == cache_folder() and resumed.decode.stop == "bound"


def test_the_run_directory_names_its_files(dates_run: tuple[Path, dict]) -> None:
    """Every file a finished training leaves is where its ``RunDir`` says, and reads back as written."""
    run = RunDir(dates_run[0])
    assert str(run) == os.fspath(run) == str(dates_run[0]) and repr(run) == f"RunDir({str(dates_run[0])!r})"
    names = {run.config_file: "config.yaml", run.best: "best.pt", run.last: "last.pt", run.checkpoints: "checkpoints",
             run.metrics_file: "metrics.jsonl", run.test_hyp: "test.hyp", run.attention: "attention",
             run.checkpoint("averaged.pt"): "averaged.pt"}
    assert {path: str(path.relative_to(run.path)) for path in names} == names
    for path in (run.config_file, run.best, run.last, run.metrics_file, run.test_hyp, run.checkpoint_index):
        assert path.is_file(), path
    assert list((run.path / RunDir.TENSORBOARD).glob("events.out.tfevents.*"))
    assert run.config().model.attention == "bahdanau" and run.holds_run()
    src, trg = run.tokenizers(run.config().tokenizer.joint)
    assert src is trg and src.path.parent == run.path
    records = run.metrics()
    assert records == [json.loads(line) for line in run.metrics_file.read_text().splitlines()]
    assert [r["split"] for r in records].count("test") == 1
    dev_steps = [r["step"] for r in records if r["split"] == "dev"]
    assert run.step_checkpoints() == [run.step_checkpoint(step) for step in dev_steps]  # train.keep_last=5 keeps all


def test_metrics_read_back_as_written_and_a_resume_drops_what_followed_its_checkpoint(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    log = run.metrics_log()
    written = [{"split": "train", "step": s, "loss": 1.0 / s} for s in (1, 2, 3, 4)]
    for record in written:
        log.write(**record)
    assert run.metrics() == written
    with run.metrics_file.open("a") as f:
        f.write('{"split": "train", "st')  # a kill cut the last line short
    log.truncate(2)
    assert run.metrics() == written[:2]


def test_damaged_metrics_are_one_line_naming_file_and_line_or_left_out(tmp_path: Path) -> None:
    """``nmt plot-metrics`` names a damaged line; the server's scores leave it out (and a missing file gives none)."""
    run = RunDir(tmp_path)
    with pytest.raises(NmtError, match=rf"^metrics not found: {run.metrics_file} \(is {tmp_path} a training run"):
        run.metrics()
    assert run.metrics(skip_damaged=True) == []
    run.metrics_file.write_text('{"split": "dev", "step": 1}\n\n{"split": "dev", "st\n[1, 2]\n{"split": "test"}\n')
    with pytest.raises(NmtError, match=rf"^{run.metrics_file}:3: not a JSON record \(Unterminated string"):
        run.metrics()
    assert run.metrics(skip_damaged=True) == [{"split": "dev", "step": 1}, {"split": "test"}]
    run.metrics_file.write_text('{"split": "dev", "step": 1}\n[1, 2]\n')
    with pytest.raises(NmtError, match=rf"^{run.metrics_file}:2: not a JSON object$"):
        run.metrics()
