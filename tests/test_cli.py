"""The `nmt` command: help with examples, files in and out, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


def nmt(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nmt", *args], input=stdin, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("command", [[], ["translate"], ["plot-attention"], ["train"], ["average"], ["plot-length"],
                                     ["evaluate"], ["serve"], ["info"], ["data"]])
def test_help_lists_options_and_examples(command: list[str]) -> None:
    result = nmt(*command, "--help")
    assert result.returncode == 0
    assert "example" in result.stdout.lower()
    if command == ["translate"]:
        assert "--input" in result.stdout and "--model" in result.stdout
    if command == ["data"]:
        assert "{multi30k}" in result.stdout and "reporting results only" in result.stdout


def test_translate_files_and_stdin(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir, _ = dates_run
    src = run_dir / "data" / "test.txt"
    result = nmt("translate", "-m", str(run_dir), "-i", str(src), "-o", str(tmp_path / "out.txt"))
    assert result.returncode == 0, result.stderr
    hyps = (tmp_path / "out.txt").read_text().splitlines()
    refs = (run_dir / "data" / "test.iso").read_text().splitlines()
    assert len(hyps) == len(refs)
    assert sum(h == r for h, r in zip(hyps, refs, strict=True)) >= 0.95 * len(refs)
    piped = nmt("translate", "-m", str(run_dir), stdin="1 April 2020\n\n2.1.03\n")
    assert piped.stdout == "2020-04-01\n\n2003-01-02\n"


def test_errors_are_one_line_naming_the_file(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    result = nmt("translate", "-m", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"nmt translate: error: run config not found: {tmp_path / 'missing' / 'config.yaml'} "
        f"(is {tmp_path / 'missing'} a training run directory?)"]
    run_dir, _ = dates_run
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.yaml", "spm.joint.model"):
        (broken / name).write_bytes((run_dir / name).read_bytes())
    (broken / "best.pt").write_bytes(b"\x00garbage")
    result = nmt("translate", "-m", str(broken), stdin="1 May 2000\n")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"nmt translate: error: cannot read checkpoint {broken}")


def test_plot_attention_writes_an_image(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    out = tmp_path / "plot.png"
    result = nmt("plot-attention", "-m", str(dates_run[0]), "--text", "the 9th of June 1984", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "1984-06-09"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_train_prints_the_composed_config() -> None:
    result = nmt("train", "model.hidden_size=32", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "hidden_size: 32" in result.stdout and "attention: bahdanau" in result.stdout


def test_train_error_is_one_line(tmp_path: Path) -> None:
    result = nmt("train", "data=multi30k_deen", f"data.dir={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"nmt train: error: Multi30k not found in {tmp_path / 'nowhere'}: download it with 'nmt data multi30k --dir "
        f"{tmp_path / 'nowhere'}' (or set NMT_MULTI30K or data.dir=DIR)")
    assert "Traceback" not in result.stderr


def test_average_command_writes_a_checkpoint_translate_uses(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir, _ = dates_run
    result = nmt("average", "-m", str(run_dir), "--last", "2", "-o", str(run_dir / "last2.pt"))
    assert result.returncode == 0, result.stderr
    assert "averaged 2 checkpoints" in result.stdout and (run_dir / "last2.pt").is_file()
    out = nmt("translate", "-m", str(run_dir), "--checkpoint", "last2.pt", stdin="25 November 2026\n")
    assert out.stdout == "2026-11-25\n"
    missing = nmt("average", "-m", str(tmp_path))
    assert missing.returncode != 0 and "no checkpoints in" in missing.stderr


def test_a_closed_output_pipe_ends_quietly(tmp_path: Path) -> None:
    (tmp_path / "ref.txt").write_text("a small test\n")
    process = subprocess.Popen([sys.executable, "-m", "nmt", "evaluate", "-r", str(tmp_path / "ref.txt"),
                                "--hypothesis", str(tmp_path / "ref.txt")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # as `nmt ... | head` does once it has its lines
    assert process.wait(timeout=300) == 141
    assert process.stderr.read() == b""


def test_score_gives_the_log_probabilities_the_search_found(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    """Scoring the model's own greedy translations gives back the scores greedy search reported; the references
    of other sentences score far lower; the per-token scores add up to the sentence's."""
    run_dir, _ = dates_run
    src = run_dir / "data" / "test.txt"
    lines = src.read_text().splitlines()[:40]
    (tmp_path / "src").write_text("\n".join(lines) + "\n")
    found = nmt("translate", "-m", str(run_dir), "-i", str(tmp_path / "src"), "--beam", "1", "--scores",
                "--precision", "fp32")
    scores, texts = zip(*(line.split("\t") for line in found.stdout.splitlines()), strict=True)
    (tmp_path / "hyp").write_text("\n".join(texts) + "\n")
    (tmp_path / "wrong").write_text("\n".join(texts[1:] + texts[:1]) + "\n")
    own = nmt("score", "-m", str(run_dir), "-i", str(tmp_path / "src"), "-t", str(tmp_path / "hyp"), "--precision",
              "fp32")
    assert own.returncode == 0, own.stderr
    rows = [line.split("\t") for line in own.stdout.splitlines()]
    assert len(rows) == len(lines)
    for (score, perplexity, tokens), reported in zip(rows, scores, strict=True):
        assert abs(float(score) - float(reported)) < 2e-3
        assert abs(sum(float(t.rsplit(":", 1)[1]) for t in tokens.split()) - float(score)) < 0.01
        assert tokens.split()[-1].startswith("</s>:") and float(perplexity) >= 1.0
    wrong = nmt("score", "-m", str(run_dir), "-i", str(tmp_path / "src"), "-t", str(tmp_path / "wrong"), "--jsonl")
    records = [json.loads(line) for line in wrong.stdout.splitlines()]
    assert sum(r["score"] for r in records) < sum(float(r[0]) for r in rows) - 10 * len(rows)
    assert all(abs(sum(r["token_scores"]) - r["score"]) < 0.01 for r in records)
    assert "scored 40 pairs" in wrong.stderr


def test_shortlist_is_built_from_the_run_and_searches_almost_as_the_full_vocabulary(
        dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    """``nmt shortlist`` writes RUN/shortlist.pt and reports list sizes; ``--shortlist K`` translates as the full
    search does on nearly every line; without the table, one line naming the command that builds it."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("config.yaml", "spm.joint.model", "best.pt"):
        (run_dir / name).write_bytes((dates_run[0] / name).read_bytes())
    (run_dir / "data").symlink_to(dates_run[0] / "data")
    src = tmp_path / "src"
    src.write_text("\n".join((dates_run[0] / "data" / "test.txt").read_text().splitlines()[:200]) + "\n")
    missing = nmt("translate", "-m", str(run_dir), "-i", str(src), "--shortlist", "5")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip().splitlines()[-1] == (f"nmt translate: error: decode.shortlist needs {run_dir}/"
                                                        f"shortlist.pt: build it with 'nmt shortlist -m {run_dir}'")
    built = nmt("shortlist", "-m", str(run_dir), "--per-source", "20", "--frequent", "20")
    assert built.returncode == 0, built.stderr
    sizes = [int(line.split(": ")[1].split()[0]) for line in built.stdout.splitlines()[1:]]
    assert built.stdout.startswith(f"{run_dir / 'shortlist.pt'}: ") and sizes == sorted(sizes) and len(sizes) == 3
    full = nmt("translate", "-m", str(run_dir), "-i", str(src), "--beam", "5").stdout.splitlines()
    listed = nmt("translate", "-m", str(run_dir), "-i", str(src), "--beam", "5", "--shortlist", "10")
    assert listed.returncode == 0, listed.stderr
    same = sum(a == b for a, b in zip(full, listed.stdout.splitlines(), strict=True))
    assert same >= 0.97 * len(full)
