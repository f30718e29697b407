"""The attention and alignment commands: plot-attention (files, folders, heads), align, evaluate-alignment,
plot-metrics; help with examples, one-line errors naming the file."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from nmt import checkpoint
from nmt.models.builder import build_model
from nmt.rundir import RunDir
from nmt.tokenizer import Tokenizer
from tests.conftest import compose_config


def nmt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nmt", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def transformer_run(dates_run: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained small Transformer with the date run's tokenizer: 2 decoder layers of 4 heads."""
    run_dir = tmp_path_factory.mktemp("transformer_run")
    shutil.copy(dates_run[0] / "spm.joint.model", run_dir)
    cfg = OmegaConf.load(dates_run[0] / "config.yaml")
    cfg.model = compose_config(["model=transformer_small"]).model
    OmegaConf.save(cfg, run_dir / "config.yaml")
    vocab = len(Tokenizer(run_dir / "spm.joint.model"))
    torch.manual_seed(0)
    checkpoint.save({"model": build_model(RunDir(run_dir).config().model, vocab, vocab).state_dict()},
                    run_dir / "best.pt")
    return run_dir


@pytest.mark.parametrize("command", ["plot-attention", "align", "evaluate-alignment", "plot-metrics"])
def test_help_has_examples(command: str) -> None:
    result = nmt(command, "--help")
    assert result.returncode == 0
    assert f"nmt {command}" in result.stdout.split("examples:")[1]
    if command == "evaluate-alignment":
        assert "SENT I J [S|P]" in result.stdout and "i?j" in result.stdout


def test_align_writes_a_pharaoh_line_per_pair(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir, _ = dates_run
    src, trg = tmp_path / "src.txt", tmp_path / "trg.txt"
    src.write_text("Wednesday, 25 November 2026\n\n3.4.99\nthe 1st of May 1950\n")
    trg.write_text("2026-11-25\n\n1999-04-03\n1950-05-01\n")
    result = nmt("align", "-m", str(run_dir), "-i", str(src), "-t", str(trg), "-o", str(tmp_path / "out.align"))
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "out.align").read_text().split("\n")
    assert len(lines) == 5 and lines[1] == "" and lines[4] == ""  # 4 lines, the blank pair blank
    for line in (lines[0], lines[2], lines[3]):  # one target word (the ISO date) -> one link
        assert re.fullmatch(r"\d+-0", line), line
    assert int(lines[0].split("-")[0]) in range(4) and lines[2] == "0-0"
    assert nmt("align", "-m", str(run_dir), "-i", str(src), "-t", str(trg)).stdout == "\n".join(lines)


def test_align_refuses_files_of_different_lengths(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    src, trg = tmp_path / "src.txt", tmp_path / "trg.txt"
    src.write_text("1 May 2000\n2 May 2000\n")
    trg.write_text("2000-05-01\n")
    result = nmt("align", "-m", str(dates_run[0]), "-i", str(src), "-t", str(trg))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"nmt align: error: parallel files differ in length: {src} has 2 lines, {trg} has 1"]


@pytest.mark.parametrize("gold_text", ["0-0 1-1 2?2\n0-1 1?0\n", "1 1 1 S\n1 2 2 S\n1 3 3 P\n2 1 2 S\n2 2 1 P\n"],
                         ids=["pharaoh", "sent-i-j-sp"])
def test_evaluate_alignment(tmp_path: Path, gold_text: str) -> None:
    (tmp_path / "gold").write_text(gold_text)
    (tmp_path / "pred").write_text("0-0 1-2 2-2\n1-0\n")
    result = nmt("evaluate-alignment", "-r", str(tmp_path / "gold"), "--hypothesis", str(tmp_path / "pred"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("AER 42.86  precision 75.00  recall 33.33  "
                             "(2 sentences; 4 predicted, 3 sure, 5 possible links)\n")


def test_evaluate_alignment_errors_name_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "gold").write_text("0-0\n0-1\n")
    (tmp_path / "pred").write_text("0-0\n0:1\n")
    result = nmt("evaluate-alignment", "-r", str(tmp_path / "gold"), "--hypothesis", str(tmp_path / "pred"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"nmt evaluate-alignment: error: {tmp_path / 'pred'}:2: bad alignment link '0:1' "
        f"(expected i-j, or i?j for a possible link)"]


def test_plot_attention_of_every_line_into_a_folder(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    lines = tmp_path / "in.txt"
    lines.write_text("".join(f"{d} May 2000\n" for d in range(1, 10)) + "\n3.4.99\n")
    result = nmt("plot-attention", "-m", str(dates_run[0]), "-i", str(lines), "--all", "-o", str(tmp_path / "plots"),
                 "--format", "svg")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"10 images in {tmp_path / 'plots'}"
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == [f"{n:02d}.svg" for n in (*range(1, 10), 11)]  # line 10 is blank
    assert all(p.read_text().startswith("<?xml") for p in (tmp_path / "plots").iterdir())


def test_plot_attention_heads_of_a_transformer(transformer_run: Path, dates_run: tuple[Path, dict],
                                               tmp_path: Path) -> None:
    for args, name in ((["--heads"], "grid.png"), (["--layer", "1", "--head", "4"], "head.png"), ([], "mean.pdf")):
        result = nmt("plot-attention", "-m", str(transformer_run), "--text", "25.11.26", "--beam", "1",
                     "-o", str(tmp_path / name), *args)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / name).stat().st_size > 5_000
    assert (tmp_path / "mean.pdf").read_bytes()[:4] == b"%PDF"
    result = nmt("plot-attention", "-m", str(transformer_run), "--text", "25.11.26", "--layer", "3")
    assert result.stderr.strip().splitlines()[-1] == (
        "nmt plot-attention: error: layer 3 out of range: the model has 2 decoder layers (1 to 2)")
    result = nmt("plot-attention", "-m", str(dates_run[0]), "--text", "25.11.26", "--heads")
    assert result.returncode == 1 and "need a Transformer" in result.stderr


def test_plot_metrics_of_two_runs(dates_run: tuple[Path, dict], transformer_run: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(dates_run[0] / "metrics.jsonl", other)
    result = nmt("plot-metrics", "-m", str(dates_run[0]), "-m", str(other), "-o", str(tmp_path / "curves.png"))
    assert result.returncode == 0, result.stderr
    curves = (tmp_path / "curves.png").read_bytes()
    assert curves[:4] == b"\x89PNG" and len(curves) > 20_000
    result = nmt("plot-metrics", "-m", str(transformer_run), "-o", str(tmp_path / "x.png"))
    assert result.returncode == 1
    assert result.stderr.strip() == (f"nmt plot-metrics: error: metrics not found: {transformer_run / 'metrics.jsonl'} "
                                     f"(is {transformer_run} a training run directory?)")


def test_plot_attention_usage_errors(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir = str(dates_run[0])
    for args, message in ((["--text", "  "], "nothing to translate: --text is blank"),
                          (["--text", "3.4.99", "--all"], "--all writes an image per line into a folder"),
                          (["--text", "3.4.99", "-o", str(tmp_path / "a.jpg")], "the image format follows the suffix")):
        result = nmt("plot-attention", "-m", run_dir, *args)
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()[-1:]
        assert line.startswith("nmt plot-attention: error: ") and message in line
    # checked before any model is loaded: a missing run directory is not what the line names
    result = nmt("plot-attention", "-m", str(tmp_path / "no-run"), "--text", "3.4.99", "-o", str(tmp_path / "a.jpg"))
    assert result.returncode == 1 and "the image format follows the suffix" in result.stderr
    assert "no-run" not in result.stderr and not (tmp_path / "a.jpg").exists()
