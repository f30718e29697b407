"""JoeyNMT 2.3 through the harness in ../shared/bench/joeynmt (its venv from `setup.sh`): training for a number of
updates (not seconds) and decoding, for the benchmarks that compare nmt with it in the same invocation."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

Rows = dict[int, tuple[float, float, int, int, int]]  # update -> (start, end, sentences, trg tokens, src tokens)


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "JOEY_THREADS": str(threads), "JOEY_BUDGET_S": "0"}


def work_folder() -> Path:
    """The harness's work folder: JOEY_WORK, or its default."""
    return Path(os.environ.get("JOEY_WORK", Path.home() / ".cache/joeybench"))


def train(harness: Path, name: str, updates: int, threads: int, validate_at_end: bool = False) -> tuple[Path, Rows]:
    """Train the harness's `rnn` config for ``updates`` updates into WORK/models/NAME, validating (and so saving
    a checkpoint) only after the last one when ``validate_at_end``; returns the work folder and the per-update log."""
    import yaml

    harness = harness.resolve()
    bench = ["bash", str(harness / "bench.sh")]
    subprocess.run([*bench, "spm"], env=_env(threads), check=True, capture_output=True)
    template = Path(subprocess.run([*bench, "config", "rnn"], env=_env(threads), check=True, capture_output=True,
                                   text=True).stdout.strip().splitlines()[-1])
    work = template.parent.parent
    cfg = yaml.safe_load(template.read_text())
    cfg["model_dir"] = str(work / "models" / name)
    last_log = 100 * (updates // 100 + 1)
    cfg["training"].update(updates=updates, logging_freq=100,
                           validation_freq=updates if validate_at_end and updates % 100 == 0 else last_log)
    config = work / "configs" / f"{name}.yaml"
    config.write_text(yaml.safe_dump(cfg))
    steplog = work / f"{name}.steps.tsv"
    python = Path(os.environ.get("JOEY_VENV", Path.home() / ".cache/joeynmt-venv")) / "bin" / "python"
    subprocess.run(["/usr/bin/time", "-v", "-o", str(work / f"{name}.time"), str(python),
                    str(harness / "scripts" / "run_joey.py"), "train", str(config), "--skip-test"],
                   env={**_env(threads), "JOEY_STEPLOG": str(steplog)}, check=True, capture_output=True, cwd=work)
    rows: Rows = {}
    for line in steplog.read_text().splitlines()[1:]:
        step, start, end, sentences, trg, src = line.split("\t")
        rows[int(step)] = (float(start), float(end), int(sentences), int(trg), int(src))
    return work, rows


def peak_rss_mib(time_v_output: str) -> float:
    """Peak RSS from /usr/bin/time -v."""
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_v_output).group(1)) / 1024


def wall_seconds(time_v_output: str) -> float:
    """Wall time from /usr/bin/time -v."""
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", time_v_output).group(1)
    return sum(float(x) * 60**i for i, x in enumerate(reversed(wall.split(":"))))


def decode(harness: Path, checkpoint: Path, beam: int, threads: int) -> tuple[float, float, float, Path]:
    """Decode test_2016_flickr (batches of 64 sentences) with a checkpoint of the `rnn` config: (decode s, wall s,
    peak RSS MiB, hypothesis file). The harness's decoding config names WORK/models/rnn as JoeyNMT's model_dir,
    which JoeyNMT requires to exist although it only reads ``checkpoint``: an empty one is made if missing."""
    (work_folder() / "models" / "rnn").mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["bash", str(harness / "bench.sh"), "decode", "rnn", str(beam), "64"],
                            env={**_env(threads), "JOEY_CKPT": str(checkpoint)}, capture_output=True, text=True,
                            check=True)
    seconds = float(re.search(r"Generation took ([\d.]+)", result.stdout).group(1))
    text = result.stdout.replace("\t", "")
    hyp = Path(re.search(r"-> (\S+\.hyp\.test)", result.stdout).group(1))
    return seconds, wall_seconds(text), peak_rss_mib(text), hyp
