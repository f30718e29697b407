"""Issue 14: every mistake is one clear line before any work starts, and no work is lost.

The grid of bad options, paths and damaged run directories runs in-process through ``nmt.cli.main`` (a few cases
end to end), and checks the exit status, that the error is a single line naming the option or file, and that no
file or folder was created, changed or lost. Then bad data (the data layer), a full disk, Ctrl-C, and the log
format of stderr.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from nmt import NmtError, checkpoint, hardware
from nmt.cli import main
from nmt.cli.stream import StreamInterrupted, translate_chunks
from nmt.config import DataConfig
from nmt.data import encode, load_split
from nmt.tokenizer import Tokenizer
from nmt.translate import PartialTranslation, Translator

LOG_LINE = re.compile(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING) nmt[\w.]*: \S")  # nmt.LOG_FORMAT (cli.main sets it)


@pytest.fixture
def work(dates_run: tuple[Path, dict], tmp_path: Path) -> Path:
    """tmp_path with a copy of the date run in run/ (config, sentencepiece model, best.pt, its last two step
    checkpoints), an input in.txt, and old.txt, an earlier output that must survive any mistake."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "spm.joint.model", "best.pt"):
        shutil.copy(dates_run[0] / name, run)
    for path in checkpoint.step_checkpoints(dates_run[0])[-2:]:
        shutil.copy(path, run / "checkpoints")
    (tmp_path / "in.txt").write_text("1 May 2000\n3.4.99\n", encoding="utf-8")
    (tmp_path / "old.txt").write_text("an earlier translation\n", encoding="utf-8")
    return tmp_path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root``: type, size, modification time and bytes. A folder's modification
    time changes when anything is created in it (or created and removed)."""
    state = {}
    for path in sorted([root, *root.rglob("*")]):
        st = path.lstat()
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
        state[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, data)
    return state


def run_main(args: list[str], capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
             ) -> tuple[int, list[str], str]:
    """``nmt ARGS`` in-process: (exit status, the lines it would print on stderr, stdout)."""
    caplog.set_level(logging.INFO)  # the level the CLI logs at: its log lines are part of stderr
    with pytest.raises(SystemExit) as exit_:
        main(args)
    code = exit_.value.code
    captured = capsys.readouterr()
    lines = captured.err.splitlines() + [record.getMessage() for record in caplog.records]
    if isinstance(code, str):  # sys.exit(MESSAGE) prints MESSAGE and exits with status 1
        return 1, [*lines, *code.splitlines()], captured.out
    return code, lines, captured.out


def nmt(*args: str, stdin: bytes | None = None, stdout: int | None = subprocess.PIPE
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nmt", *args], input=stdin, stdout=stdout, stderr=subprocess.PIPE,
                          timeout=300)


def assert_one_line(lines: list[str], command: str, *says: str) -> None:
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"nmt {command}: error: "), lines
    for text in says:
        assert text in lines[0], (text, lines[0])


# --- nmt translate: options and paths --------------------------------------------------------------------------

def _links(work: Path) -> None:
    (work / "link.txt").symlink_to(work / "in.txt")
    os.link(work / "in.txt", work / "hard.txt")
    (work / "alias").symlink_to(work, target_is_directory=True)


IN, OUT = ["-i", "{w}/in.txt"], ["-o", "{w}/out.txt"]
TRANSLATE_MISTAKES = {
    # name: (arguments after `translate -m RUN`, what the line says)
    "output-is-the-input": (["-i", "{w}/in.txt", "-o", "{w}/in.txt"], ["-o {w}/in.txt is the input file"]),
    "alignments-are-the-input": (["-i", "{w}/in.txt", "--alignments", "{w}/in.txt"],
                                 ["--alignments {w}/in.txt is the input file"]),
    "output-symlink-to-the-input": (["-i", "{w}/in.txt", "-o", "{w}/link.txt"], ["-o {w}/link.txt is the input"]),
    "output-hard-link-to-the-input": (["-i", "{w}/in.txt", "-o", "{w}/hard.txt"], ["-o {w}/hard.txt is the input"]),
    "both-outputs-one-file": ([*IN, "-o", "{w}/old.txt", "--alignments", "{w}/old.txt"],
                              ["--alignments {w}/old.txt is the same file as -o {w}/old.txt"]),
    "both-new-outputs-one-file": ([*IN, "-o", "{w}/new.txt", "--alignments", "{w}/alias/new.txt"],
                                  ["--alignments {w}/alias/new.txt is the same file as -o {w}/new.txt"]),
    "output-in-a-missing-folder": ([*IN, "-o", "{w}/missing/out.txt"], ["-o {w}/missing/out.txt", "not found"]),
    "output-is-a-folder": ([*IN, "-o", "{w}/run"], ["-o {w}/run is a folder"]),
    "missing-input": (["-i", "{w}/missing.txt", *OUT], ["-i {w}/missing.txt: file not found"]),
    "beam-0": ([*IN, *OUT, "--beam", "0"], ["--beam 0", ">= 1"]),
    "nbest-negative": ([*IN, *OUT, "--nbest", "-1"], ["--nbest -1", "from 1 to the beam size"]),
    "nbest-0": ([*IN, *OUT, "--beam", "5", "--nbest", "0"], ["--nbest 0"]),
    "nbest-above-beam": ([*IN, *OUT, "--beam", "3", "--nbest", "5"], ["--nbest 5", "at most the beam size (--beam 3)"]),
    "alpha-nan": ([*IN, *OUT, "--beam", "5", "--alpha", "nan"], ["--alpha nan", "finite number >= 0"]),
    "alpha-inf": ([*IN, *OUT, "--alpha", "inf"], ["--alpha inf", "finite"]),
    "alpha-negative": ([*IN, *OUT, "--alpha", "-0.5"], ["--alpha -0.5", ">= 0"]),
    "threads-negative": ([*IN, *OUT, "--threads", "-1"], ["--threads -1", ">= 0"]),
    "batch-tokens-0": ([*IN, *OUT, "--batch-tokens", "0"], ["--batch-tokens 0", ">= 1"]),
    "max-len-a-nan": ([*IN, *OUT, "--max-len-a", "nan"], ["--max-len-a nan", "finite"]),
    "max-len-a-negative": ([*IN, *OUT, "--max-len-a", "-1"], ["--max-len-a -1.0", ">= 0"]),
    "max-len-b-negative": ([*IN, *OUT, "--max-len-b", "-1"], ["--max-len-b -1", ">= 0"]),
    "min-length-negative": ([*IN, *OUT, "--min-length", "-1"], ["--min-length -1", ">= 0"]),
    "no-repeat-ngram-negative": ([*IN, *OUT, "--no-repeat-ngram", "-2"], ["--no-repeat-ngram -2", ">= 0"]),
    "unknown-device": ([*IN, *OUT, "--device", "tpu"], ["'tpu'", "cpu, cuda or cuda:N"]),
    "missing-checkpoint": ([*IN, *OUT, "--checkpoint", "nope.pt"], ["checkpoint not found: {w}/run/nope.pt"]),
}


if not torch.cuda.is_available():
    TRANSLATE_MISTAKES["cuda-without-a-gpu"] = ([*IN, *OUT, "--device", "cuda"], ["device 'cuda'", "no CUDA GPU"])


@pytest.mark.parametrize("case", TRANSLATE_MISTAKES)
def test_translate_mistakes(case: str, work: Path, capsys: pytest.CaptureFixture,
                            caplog: pytest.LogCaptureFixture) -> None:
    args, says = TRANSLATE_MISTAKES[case]
    _links(work)
    before = snapshot(work)
    status, lines, out = run_main(["translate", "-m", str(work / "run"), *(a.format(w=work) for a in args)],
                                  capsys, caplog)
    assert status == 1 and out == ""
    assert_one_line(lines, "translate", *(s.format(w=work) for s in says))
    assert snapshot(work) == before  # nothing created, changed or lost


def test_int8_on_a_gpu_is_one_line_before_the_model_loads(work: Path, capsys: pytest.CaptureFixture,
                                                         caplog: pytest.LogCaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """--quantize int8 with a GPU: refused by the int8 check (the GPU is simulated: the device check passes)."""
    monkeypatch.setattr(hardware, "resolve_device", lambda name: torch.device("cuda", 0))
    before = snapshot(work)
    status, lines, out = run_main(["translate", "-m", str(work / "run"), "-i", str(work / "in.txt"), "-o",
                                   str(work / "out.txt"), "--quantize", "int8", "--device", "cuda"], capsys, caplog)
    assert status == 1 and out == ""
    assert_one_line(lines, "translate", "--quantize int8 runs on the CPU only", "not on cuda:0")
    assert snapshot(work) == before


# --- nmt translate: a damaged run directory ---------------------------------------------------------------------

def _edit_checkpoint(change: Callable[[dict], object]) -> Callable[[Path], None]:
    """A damage: best.pt becomes what ``change`` makes of its contents."""
    def damage(run: Path) -> None:
        torch.save(change(torch.load(run / "best.pt", weights_only=True)), run / "best.pt")
    return damage


def _reshape(state: dict) -> dict:
    state["model"]["output.weight"] = torch.zeros(7, 3)
    return state


def _nan(state: dict) -> dict:
    state["model"]["output.bias"][5] = float("nan")
    return state


def _overflow(state: dict) -> dict:
    state["model"]["output.weight"].fill_(3e38)  # finite, but the logits overflow: log_softmax gives NaN
    return state


DAMAGES: dict[str, tuple[Callable[[Path], object], list[str]]] = {
    "missing-config": (lambda run: (run / "config.yaml").unlink(), ["run config not found: {run}/config.yaml"]),
    "missing-sentencepiece-model": (lambda run: (run / "spm.joint.model").unlink(),
                                    ["sentencepiece model not found: {run}/spm.joint.model"]),
    "empty-sentencepiece-model": (lambda run: (run / "spm.joint.model").write_bytes(b""),
                                  ["sentencepiece model {run}/spm.joint.model is empty"]),
    "corrupt-sentencepiece-model": (lambda run: (run / "spm.joint.model").write_bytes(b"\x00garbage" * 40),
                                    ["sentencepiece model {run}/spm.joint.model is damaged"]),
    "corrupt-checkpoint": (lambda run: (run / "best.pt").write_bytes(b"\x00garbage"),
                           ["cannot read checkpoint {run}/best.pt"]),
    "checkpoint-not-a-dict": (_edit_checkpoint(lambda state: [1, 2]),
                              ["{run}/best.pt is not an nmt checkpoint", "a list"]),
    "checkpoint-without-weights": (_edit_checkpoint(lambda state: {"weights": state["model"]}),
                                   ["{run}/best.pt is not an nmt checkpoint", "no 'model' entry", "keys weights"]),
    "checkpoint-weights-not-tensors": (_edit_checkpoint(lambda state: {"model": {"output.weight": [1.0]}}),
                                       ["{run}/best.pt is not an nmt checkpoint", "not a dict of tensors"]),
    "checkpoint-of-another-shape": (_edit_checkpoint(_reshape),
                                    ["checkpoint {run}/best.pt does not fit the run's model: parameter output.weight "
                                     "has shape 7x3 in the checkpoint, {shape} in the model"]),
    "checkpoint-with-nan-weights": (_edit_checkpoint(_nan),
                                    ["checkpoint {run}/best.pt has non-finite weights", "output.bias"]),
}


@pytest.mark.parametrize("case", DAMAGES)
def test_a_damaged_run_directory_is_one_line_naming_the_file(case: str, work: Path, capsys: pytest.CaptureFixture,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    damage, says = DAMAGES[case]
    run = work / "run"
    shape = "x".join(map(str, torch.load(run / "best.pt", weights_only=True)["model"]["output.weight"].shape))
    damage(run)
    before = snapshot(work)
    status, lines, _ = run_main(["translate", "-m", str(run), "-i", str(work / "in.txt"), "-o", str(work / "old.txt")],
                                capsys, caplog)
    assert status == 1
    assert_one_line(lines, "translate", *(s.format(run=run, shape=shape) for s in says))
    assert snapshot(work) == before


def test_finite_weights_with_nan_scores_name_the_checkpoint(work: Path, capsys: pytest.CaptureFixture,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """Weights that pass the load check but overflow in the output layer: every score is NaN."""
    run = work / "run"
    _edit_checkpoint(_overflow)(run)
    status, lines, out = run_main(["translate", "-m", str(run), "-i", str(work / "in.txt"), "--device", "cpu",
                                   "--precision", "fp32"], capsys, caplog)
    assert status == 1 and out == ""
    errors = [line for line in lines if not line.startswith("translating on")]  # the precision log line
    assert_one_line(errors, "translate", f"the model of checkpoint {run / 'best.pt'} gives NaN scores")


# --- nmt evaluate and nmt average -------------------------------------------------------------------------------

EVALUATE_MISTAKES = {
    "two-empty-files": (["-r", "{w}/empty.ref", "--hypothesis", "{w}/empty.hyp"],
                        ["{w}/empty.ref is empty: nothing to score"]),
    "invalid-utf8-hypotheses": (["-r", "{w}/in.txt", "--hypothesis", "{w}/bad.hyp"], ["{w}/bad.hyp:2: invalid UTF-8"]),
    "different-lengths": (["-r", "{w}/in.txt", "--hypothesis", "{w}/old.txt"],
                          ["{w}/old.txt has 1 lines, {w}/in.txt has 2"]),
}


@pytest.mark.parametrize("case", EVALUATE_MISTAKES)
def test_evaluate_mistakes(case: str, work: Path, capsys: pytest.CaptureFixture,
                           caplog: pytest.LogCaptureFixture) -> None:
    args, says = EVALUATE_MISTAKES[case]
    (work / "empty.ref").write_bytes(b"")
    (work / "empty.hyp").write_bytes(b"")
    (work / "bad.hyp").write_bytes(b"2000-05-01\n1999-04-03 \xff\n")
    status, lines, out = run_main(["evaluate", *(a.format(w=work) for a in args)], capsys, caplog)
    assert status == 1 and out == ""
    assert_one_line(lines, "evaluate", *(s.format(w=work) for s in says))


def test_evaluate_reads_stdin_as_strictly_as_a_file(tmp_path: Path) -> None:
    (tmp_path / "ref.txt").write_text("a\nb c\n", encoding="utf-8")
    result = nmt("evaluate", "-r", str(tmp_path / "ref.txt"), stdin=b"a\nb \xffc\n")
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        "nmt evaluate: error: <stdin>:2: invalid UTF-8 (invalid start byte at byte 2)"]


AVERAGE_MISTAKES = {
    "last-0": (["--last", "0"], ["--last 0: must be at least 1"]),
    "last-negative": (["--last", "-2"], ["--last -2: must be at least 1"]),
    "overwrite-best": (["-o", "{w}/run/best.pt"], ["-o {w}/run/best.pt: would overwrite the run's own best.pt"]),
    "overwrite-last": (["-o", "{w}/run/last.pt"], ["-o {w}/run/last.pt: would overwrite the run's own last.pt"]),
    "into-a-missing-folder": (["-o", "{w}/nowhere/averaged.pt"], ["-o {w}/nowhere/averaged.pt: folder {w}/nowhere "
                                                                   "not found"]),
    "onto-a-folder": (["-o", "{w}/run.pt"], ["-o {w}/run.pt is a folder: name a file"]),
    "not-a-checkpoint-name": (["-o", "{w}/config.yaml"], ["-o {w}/config.yaml: must be a file ending in .pt"]),
    "a-file-without-weights": (["{w}/other.pt"], ["{w}/other.pt is not an nmt checkpoint: no 'model' entry"]),
}


@pytest.mark.parametrize("case", AVERAGE_MISTAKES)
def test_average_mistakes(case: str, work: Path, capsys: pytest.CaptureFixture,
                          caplog: pytest.LogCaptureFixture) -> None:
    args, says = AVERAGE_MISTAKES[case]
    shutil.copy(work / "run" / "best.pt", work / "run" / "last.pt")
    torch.save({"step": 3}, work / "other.pt")
    (work / "run.pt").mkdir()
    before = snapshot(work)
    status, lines, out = run_main(["average", "-m", str(work / "run"), *(a.format(w=work) for a in args)], capsys,
                                  caplog)
    assert status == 1 and out == ""
    assert_one_line(lines, "average", *(s.format(w=work) for s in says))
    assert snapshot(work) == before


def test_average_in_the_old_spelling_writes_into_the_run(work: Path, capsys: pytest.CaptureFixture) -> None:
    """``nmt average RUN -o NAME`` (before -m RUN, when -o was a name in the run) works, with two warning lines."""
    main(["average", str(work / "run"), "--last", "2", "-o", "two.pt"])
    out, err = capsys.readouterr()
    assert (work / "run" / "two.pt").is_file() and not (Path.cwd() / "two.pt").exists()
    assert [line.split(" is deprecated")[0] for line in err.splitlines()] == [
        "nmt: warning: RUN as a positional argument", "nmt: warning: -o two.pt (a name in the run)"]
    assert out.startswith("averaged 2 checkpoints")


def test_average_of_a_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture,
                                  caplog: pytest.LogCaptureFixture) -> None:
    status, lines, _ = run_main(["average", "-m", str(tmp_path / "nowhere")], capsys, caplog)
    assert status == 1
    assert_one_line(lines, "average", f"run directory not found: {tmp_path / 'nowhere'}")
    assert list(tmp_path.iterdir()) == []


# --- end to end -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "says"), [
    (["-i", "{w}/in.txt", "-o", "{w}/in.txt"], "-o {w}/in.txt is the input file (-i {w}/in.txt)"),
    (["-i", "{w}/in.txt", "--beam", "5", "--alpha", "nan"], "--alpha nan: must be a finite number >= 0"),
    (["-i", "{w}/in.txt", "--nbest", "-1"], "--nbest -1"),
])
def test_mistakes_end_to_end(args: list[str], says: str, work: Path) -> None:
    before = snapshot(work)
    result = nmt("translate", "-m", str(work / "run"), *(a.format(w=work) for a in args))
    assert result.returncode == 1 and result.stdout == b""
    assert_one_line(result.stderr.decode().splitlines(), "translate", says.format(w=work))
    assert snapshot(work) == before


def test_the_file_on_stdin_is_not_overwritten(work: Path) -> None:
    """`nmt translate -o y.txt < x.txt`, y.txt a hard link of x.txt: the file on stdin is the input too."""
    os.link(work / "in.txt", work / "hard.txt")
    before = snapshot(work)
    with open(work / "in.txt", "rb") as stdin:
        result = subprocess.run([sys.executable, "-m", "nmt", "translate", "-m", str(work / "run"), "-o",
                                 str(work / "hard.txt")], stdin=stdin, capture_output=True, timeout=300)
    assert result.returncode == 1
    assert_one_line(result.stderr.decode().splitlines(), "translate", f"-o {work / 'hard.txt'} is the file on stdin")
    assert snapshot(work) == before


# --- a full disk ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["-o", "--alignments", "stdout"])
def test_translate_onto_a_full_disk(where: str, work: Path) -> None:
    """/dev/full fails every write with ENOSPC, as a full disk does."""
    args = ["translate", "-m", str(work / "run"), "-i", str(work / "in.txt")]
    if where == "stdout":
        with open("/dev/full", "wb") as full:
            result = nmt(*args, stdout=full.fileno())
    else:
        result = nmt(*args, where, "/dev/full")
    assert result.returncode == 1
    errors = [line for line in result.stderr.decode().splitlines() if not LOG_LINE.match(line)]
    name = "<stdout>" if where == "stdout" else "/dev/full"
    assert errors == [f"nmt translate: error: no space left on the device while writing {name}"]


def test_a_full_disk_during_a_checkpoint_save(tmp_path: Path) -> None:
    """The temporary file of the save is a link to /dev/full: the real ENOSPC, from the kernel."""
    last = tmp_path / "last.pt"
    checkpoint.save({"step": 1}, last)
    before = last.read_bytes()
    (tmp_path / "last.pt.tmp").symlink_to("/dev/full")
    with pytest.raises(NmtError) as error:
        checkpoint.save({"model": {"w": torch.zeros(1000)}}, last)
    assert str(error.value) == f"no space left on the device while writing {last}"
    assert last.read_bytes() == before and not os.path.lexists(tmp_path / "last.pt.tmp")


def test_average_onto_a_full_disk(work: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
                                  ) -> None:
    run = work / "run"
    (run / "averaged.pt.tmp").symlink_to("/dev/full")
    status, lines, _ = run_main(["average", "-m", str(run), "--last", "2"], capsys, caplog)
    assert status == 1
    assert_one_line(lines, "average", f"no space left on the device while writing {run / 'averaged.pt'}")
    assert not (run / "averaged.pt").exists() and not os.path.lexists(run / "averaged.pt.tmp")


# --- Ctrl-C -----------------------------------------------------------------------------------------------------

def test_ctrl_c_writes_the_translated_prefix_and_exits_130(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir = dates_run[0]
    lines = (run_dir / "data" / "test.txt").read_text(encoding="utf-8").splitlines()[:500] * 60  # 30,000
    (tmp_path / "long.txt").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    # Every chunk of 1,000 lines is the same, so its translations are those of the first chunk.
    expected = [t.text for t in Translator.from_run(run_dir).translate(lines[:1000])] * 30
    process = subprocess.Popen([sys.executable, "-m", "nmt", "translate", "-m", str(run_dir), "-i",
                                str(tmp_path / "long.txt"), "--device", "cpu", "--precision", "fp32",
                                "--threads", str(torch.get_num_threads())],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Output has begun (the first chunk is being written): interrupt then. The timeout only guards a hang.
        assert select.select([process.stdout], [], [], 240)[0], "no output"
        process.send_signal(signal.SIGINT)
        stdout, err = process.communicate(timeout=240)
    finally:
        process.kill()
        process.wait()
    out = stdout.decode().splitlines()
    assert process.returncode == 130, f"exit {process.returncode} after {len(out)} lines; stderr: {err.decode()}"
    assert 1000 <= len(out) < len(lines) and out == expected[: len(out)]
    errors = [line for line in err.decode().splitlines() if not LOG_LINE.match(line)]
    assert errors == [f"nmt translate: interrupted: stopped after translating and writing the first {len(out):,} "
                      f"lines"]


def _stream_stopped_after_the_first_chunk(run_dir: Path, kind: type[Translator]) -> None:
    """Two chunks of 3 lines through a ``kind`` translator stop after the first, written whole."""
    plain = Translator.from_run(run_dir)
    translator = kind(plain.model, plain.src_tok, plain.trg_tok, plain.decode, plain.max_src_length)
    sources = (run_dir / "data" / "test.txt").read_text(encoding="utf-8").splitlines()[:6]
    out = io.StringIO()
    with pytest.raises(StreamInterrupted) as stopped:
        translate_chunks(translator, [sources[:3], sources[3:]], out, "input", progress=False)
    assert stopped.value.lines == 3
    assert out.getvalue().splitlines() == [t.text for t in plain.translate(sources[:3])]


def test_ctrl_c_after_a_chunk_s_last_sentence_still_stops_the_stream(dates_run: tuple[Path, dict]) -> None:
    """Ctrl-C that lands after the search of a chunk's last sentence (PartialTranslation with every sentence done)
    writes the whole chunk and stops there, instead of being lost (it once let a run go on to the end, exit 0)."""
    class InterruptedAtTheEnd(Translator):
        def translate(self, sentences: list[str], names: list[str] | None = None, lines: list[int] | None = None
                      ) -> list:
            raise PartialTranslation(super().translate(sentences, names, lines))

    _stream_stopped_after_the_first_chunk(dates_run[0], InterruptedAtTheEnd)


def test_ctrl_c_whose_exception_a_library_swallowed_still_stops_the_stream(dates_run: tuple[Path, dict]) -> None:
    """Ctrl-C is remembered as well as raised: where code between nmt and the signal swallows the KeyboardInterrupt
    (simulated here by a translator that catches it), the stream still stops after writing that chunk."""
    class Swallowing(Translator):
        def translate(self, sentences: list[str], names: list[str] | None = None, lines: list[int] | None = None
                      ) -> list:
            with contextlib.suppress(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
            return super().translate(sentences, names, lines)

    before = signal.getsignal(signal.SIGINT)
    _stream_stopped_after_the_first_chunk(dates_run[0], Swallowing)
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


# --- stderr holds nmt's log lines only --------------------------------------------------------------------------

@pytest.mark.parametrize("options", [[], ["--quantize", "int8"]], ids=["fp", "int8"])
def test_stderr_of_a_small_run_is_log_lines_only(options: list[str], work: Path) -> None:
    """No progress bar when stderr is not a terminal, no library warnings (int8 quantization has some)."""
    result = nmt("translate", "-m", str(work / "run"), "-i", str(work / "in.txt"), "--device", "cpu", *options)
    assert result.returncode == 0 and result.stdout.decode() == "2000-05-01\n1999-04-03\n", result.stderr
    err = result.stderr.decode()
    assert "\r" not in err and err.endswith("\n")
    lines = err.splitlines()
    assert all(LOG_LINE.match(line) for line in lines), lines
    assert any("translating on cpu in " in line for line in lines)
    assert any("int8 (" in line for line in lines) == bool(options)


def test_datasets_draws_no_progress_bars_into_a_log(tmp_path: Path) -> None:
    (tmp_path / "train.de").write_text("ein Hund\nzwei Katzen\n", encoding="utf-8")
    (tmp_path / "train.en").write_text("a dog\ntwo cats\n", encoding="utf-8")
    code = ("from pathlib import Path\nfrom nmt.config import DataConfig\nfrom nmt.data import encode, load_split\n"
            "from nmt.tokenizer import train_sentencepiece\n"
            f"d = Path({str(tmp_path)!r})\n"
            "cfg = DataConfig(name='test', dir=str(d), src_lang='de', trg_lang='en', max_length=100,"
            " splits={'train': 'train', 'dev': 'dev'}, cache_dir=str(d / 'cache'))\n"
            "tok = train_sentencepiece(['ein Hund', 'zwei Katzen', 'a dog', 'two cats'] * 20, d / 'spm.model', 30)\n"
            "print(len(encode(cfg, 'train', load_split(cfg, d, 'train'), tok, tok)))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout == "2\n", result.stderr
    assert result.stderr == ""


# --- data -------------------------------------------------------------------------------------------------------

def data_config(directory: Path, fmt: str = "text") -> DataConfig:
    return DataConfig.model_validate({"name": "test", "format": fmt, "dir": str(directory), "src_lang": "txt",
                                      "trg_lang": "iso", "splits": {"train": "train", "dev": "dev"},
                                      "cache_dir": str(directory / "cache"), "max_length": 100})


@pytest.mark.parametrize(("fmt", "files", "says"), [
    ("text", {"train.txt": "", "train.iso": ""}, "{d}/train.txt: no sentence pairs (the train split is empty)"),
    ("text", {"dev.txt": "", "dev.iso": ""}, "{d}/dev.txt: no sentence pairs (the dev split is empty)"),
    ("tsv", {"train.tsv": ""}, "{d}/train.tsv: no sentence pairs"),
    ("jsonl", {"train.jsonl": "\n\n"}, "{d}/train.jsonl: no sentence pairs"),
    ("jsonl", {"train.jsonl": '{"src": "1 May 2000", "trg": "2000-05-01"}\n\n{"src": "2 May 2000", "trg": }\n'},
     "{d}/train.jsonl:3: not valid JSON (Expecting value at column "),
    ("jsonl", {"train.jsonl": '{"src": "1 May 2000", "trg": "2000-05-01"}\n["3.4.99", "1999-04-03"]\n'},
     "{d}/train.jsonl:2: expected a JSON object, found list"),
    ("jsonl", {"train.jsonl": '{"src": "1 May 2000", "trg": 2000}\n'},
     "{d}/train.jsonl:1: 'trg' is 2000, not a string"),
    ("jsonl", {"train.jsonl": '{"src": "1 May 2000"}\n'}, "{d}/train.jsonl:1: no 'trg'"),
    ("jsonl", {"train.jsonl": '{"translation": {"txt": "1 May 2000", "en": "x"}}\n'},
     "{d}/train.jsonl: the translations are in txt, en, not txt and iso (line 1; set data.src_lang"),
])
def test_bad_data_is_one_line_naming_the_file(fmt: str, files: dict[str, str], says: str, tmp_path: Path) -> None:
    for name, text in {"train.txt": "a\n", "train.iso": "b\n", "dev.txt": "c\n", "dev.iso": "d\n", **files}.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    split = "dev" if "dev.txt" in files else "train"
    with pytest.raises(NmtError) as error:
        load_split(data_config(tmp_path, fmt), tmp_path, split)
    assert str(error.value).startswith(says.format(d=tmp_path)) and "\n" not in str(error.value)


def test_a_jsonl_corpus_of_the_date_task_keeps_its_strings(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    """datasets' own JSON loader turns ISO dates into timestamps; nmt reads every value as the string it is."""
    data = dates_run[0] / "data"
    pairs = list(zip(*(data.joinpath(f"test.{x}").read_text(encoding="utf-8").splitlines() for x in ("txt", "iso")),
                     strict=True))
    records = [{"src": s, "trg": t} if i % 2 else {"translation": {"txt": s, "iso": t}, "id": i}
               for i, (s, t) in enumerate(pairs)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    ds = load_split(data_config(tmp_path, "jsonl"), tmp_path, "train")
    assert ds.features["trg"].dtype == "string" and ds.features["src"].dtype == "string"
    assert list(zip(ds["src"], ds["trg"], strict=True)) == pairs


def test_a_damaged_token_cache_is_built_again(dates_run: tuple[Path, dict], tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    for x in ("txt", "iso"):
        shutil.copy(dates_run[0] / "data" / f"test.{x}", tmp_path / f"train.{x}")
    cfg = data_config(tmp_path)
    tok = Tokenizer(dates_run[0] / "spm.joint.model")
    first = encode(cfg, "train", load_split(cfg, tmp_path, "train"), tok, tok)
    (cache,) = (Path(f["filename"]) for f in first.cache_files)
    expected = first[:]
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])  # a crash or a full disk cut it short
    with caplog.at_level(logging.WARNING):
        again = encode(cfg, "train", load_split(cfg, tmp_path, "train"), tok, tok)
    assert again[:] == expected
    assert f"damaged cache file {cache}" in caplog.text


def test_two_runs_share_the_token_cache(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    """Two processes tokenise the same split into the same cache at once: both get whole files (datasets writes
    a temporary file and renames it), and no temporary file is left."""
    lines = (dates_run[0] / "data" / "train.txt").read_text(encoding="utf-8").splitlines()
    isos = (dates_run[0] / "data" / "train.iso").read_text(encoding="utf-8").splitlines()
    (tmp_path / "train.txt").write_text("".join(f"{x}\n" for x in lines * 5), encoding="utf-8")
    (tmp_path / "train.iso").write_text("".join(f"{x}\n" for x in isos * 5), encoding="utf-8")
    code = ("import sys\nfrom pathlib import Path\nfrom nmt.config import DataConfig\n"
            "from nmt.data import encode, load_split\nfrom nmt.tokenizer import Tokenizer\n"
            f"d = Path({str(tmp_path)!r})\n"
            "cfg = DataConfig(name='test', dir=str(d), src_lang='txt', trg_lang='iso', max_length=100,"
            " splits={'train': 'train', 'dev': 'dev'}, cache_dir=str(d / 'cache'))\n"
            f"tok = Tokenizer({str(dates_run[0] / 'spm.joint.model')!r})\n"
            "ds = encode(cfg, 'train', load_split(cfg, d, 'train'), tok, tok)\n"
            "print(len(ds), sum(ds.with_format('numpy')['src_len']))\n")
    load_split(data_config(tmp_path), tmp_path, "train")  # the text files' Arrow copies exist: the race is the tokens
    processes = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], results
    assert results[0][0] == results[1][0] and results[0][0].startswith(f"{len(lines) * 5} ")
    (left,) = (tmp_path / "cache" / "tokens").iterdir()
    assert left.suffix == ".arrow"
