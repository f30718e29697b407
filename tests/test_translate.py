"""The translation API and streaming: one output line per input line, in order, whatever the input; answers as
soon as a pipe pauses, large batches from a steady stream; precision and device."""

import contextlib
import io
import logging
import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nmt import NmtError
from nmt.cli.stream import read_chunks, read_lines_replacing, translate_chunks, translate_stream
from nmt.hardware import Precision, resolve_device, resolve_precision
from nmt.translate import Translator


@pytest.fixture(scope="module")
def translator(dates_run: tuple[Path, dict]) -> Translator:
    return Translator.from_run(dates_run[0])


def test_translate_returns_text_scores_attention_and_alignment(translator: Translator) -> None:
    (t,) = translator.translate(["Wednesday, 25 November 2026"])
    assert t.text == "2026-11-25"
    assert t.score == pytest.approx(sum(t.token_scores), abs=1e-5) and t.score <= 0
    assert t.attention.shape == (len(t.trg_pieces) + 1, len(t.src_pieces) + 1)
    assert t.src_pieces[0] == "▁Wednesday"
    assert t.alignment and all("-" in link for link in t.alignment.split())
    assert t.nbest == [(t.text, t.score)]


def test_beam_and_nbest_through_the_api(dates_run: tuple[Path, dict]) -> None:
    beam = Translator.from_run(dates_run[0], beam_size=4, nbest=3, alpha=1.0)
    (t,) = beam.translate(["the 3rd of May 1999"])
    assert t.text == "1999-05-03" and len(t.nbest) == 3 and t.nbest[0] == (t.text, t.score)
    assert len({text for text, _ in t.nbest}) == 3


def test_line_alignment_with_blank_long_and_odd_lines(translator: Translator, caplog: pytest.LogCaptureFixture
                                                      ) -> None:
    long_line = " ".join(["Wednesday, 25 November 2026"] * 40)
    lines = ["3 March 2001", "", "   ", "\t12.05.98  ", long_line, "nov 2nd,\t2010", ""]
    out = io.StringIO()
    with caplog.at_level(logging.WARNING):
        count = translate_stream(translator, lines, out, "input.txt", chunk_lines=3, progress=False)
    result = out.getvalue().split("\n")
    assert count == len(lines) and result[-1] == "" and len(result) == len(lines) + 1
    assert result[0] == "2001-03-03" and result[1] == result[2] == result[6] == ""
    assert result[3] == "1998-05-12" and result[5] == "2010-11-02"
    assert "input.txt:5" in caplog.text and "truncated" in caplog.text


def test_output_starts_before_the_input_ends(translator: Translator) -> None:
    consumed = []

    def lines():
        for i in range(10):
            consumed.append(i)
            yield f"{i + 1} January 2000"

    class Out(io.StringIO):
        first_write_after: int | None = None

        def write(self, s: str) -> int:
            if self.first_write_after is None:
                self.first_write_after = len(consumed)
            return super().write(s)

    out = Out()
    translate_stream(translator, lines(), out, "<gen>", chunk_lines=2, progress=False)
    assert out.first_write_after == 2
    assert out.getvalue().splitlines() == [f"2000-01-{d:02d}" for d in range(1, 11)]


def test_invalid_utf8_is_replaced_and_named(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        lines = list(read_lines_replacing([b"ok\n", b"bad \xff byte\r\n", b"end"], "in.txt"))
    assert lines == ["ok", "bad \ufffd byte", "end"]
    assert "in.txt:2" in caplog.text


def test_int8_quantized_model_still_translates(dates_run: tuple[Path, dict]) -> None:
    quantized = Translator.from_run(dates_run[0], quantize="int8")
    assert [t.text for t in quantized.translate(["4 July 1976", "12/31/2049"])] == ["1976-07-04", "2049-12-31"]


def test_bf16_translation_agrees_with_fp32(dates_run: tuple[Path, dict]) -> None:
    """bfloat16 matrix products: the same translations of held-out dates, and scores close to fp32's."""
    run_dir, _ = dates_run
    src = (run_dir / "data" / "test.txt").read_text().splitlines()[:100]
    fp32 = Translator.from_run(run_dir, beam_size=5).translate(src)
    bf16 = Translator.from_run(run_dir, precision="bf16", beam_size=5).translate(src)
    assert sum(a.text == b.text for a, b in zip(fp32, bf16, strict=True)) >= 98
    assert max(abs(a.score - b.score) for a, b in zip(fp32, bf16, strict=True) if a.text == b.text) < 0.1
    with pytest.raises(NmtError, match="unknown precision"):
        Translator.from_run(run_dir, precision="fp8")
    with pytest.raises(NmtError, match=r"^unknown decoding setting 'beam' \(known: beam_size, "):
        Translator.from_run(run_dir, beam=5)  # a misspelt setting is refused, not ignored


def test_precision_and_device_are_resolved(dates_run: tuple[Path, dict]) -> None:
    auto = Translator.from_run(dates_run[0], precision="auto", device="auto")
    expected = resolve_precision("auto", auto.device, model=auto.model, backward=False)  # decoding this model
    assert isinstance(auto.precision, Precision) and auto.precision == expected and auto.precision.reason
    assert auto.device == resolve_device("auto")
    chosen = Precision("bf16", "chosen by the caller")
    for precision, name in (("fp32", "fp32"), ("bf16", "bf16"), (chosen, "bf16")):
        again = Translator(auto.model, auto.src_tok, auto.trg_tok, auto.decode, auto.max_src_length, precision)
        assert again.precision.name == name
    assert again.precision is chosen
    assert [t.text for t in again.translate(["4 July 1976"])] == ["1976-07-04"]


def test_a_pause_in_the_input_ends_a_chunk() -> None:
    read, write = os.pipe()
    try:
        os.write(write, b"first line\nsecond \xff line\npartial")
        chunks = read_chunks(read, "<pipe>")
        assert next(chunks) == ["first line", "second \ufffd line"]  # the pipe stays open: answered at the pause
        os.write(write, b" end\n\nlast")
        os.close(write)
        write = -1
        assert list(chunks) == [["partial end", "", "last"]]
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)


def test_a_piped_stream_is_decoded_in_large_batches(translator: Translator, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    """2,000 lines written into a pipe at once: chunks of 1,000, not a line at a time."""
    sizes: list[int] = []
    original = translator.translate

    def counted(sentences: list[str], names: list[str] | None = None, lines: list[int] | None = None) -> list:
        sizes.append(len(sentences))
        return original(sentences, names, lines)

    monkeypatch.setattr(translator, "translate", counted)
    days = [f"{d % 28 + 1} March {1950 + d % 70}" for d in range(2000)]
    read, write = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write, "".join(f"{d}\n" for d in days).encode()),
                                              os.close(write)))
    writer.start()
    out = io.StringIO()
    try:
        count = translate_chunks(translator, read_chunks(read, "<pipe>"), out, "<pipe>", progress=False)
    finally:
        writer.join()
        os.close(read)
    assert count == 2000 and sum(sizes) == 2000 and min(sizes) >= 64, sizes
    lines = out.getvalue().splitlines()
    assert len(lines) == 2000
    assert sum(h == f"{1950 + d % 70}-03-{d % 28 + 1:02d}" for d, h in enumerate(lines)) >= 1900


def test_a_client_gets_each_answer_while_it_keeps_the_pipe_open(dates_run: tuple[Path, dict]) -> None:
    process = subprocess.Popen([sys.executable, "-m", "nmt", "translate", "-m", str(dates_run[0]), "--device", "cpu"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for line, expected in (("Wednesday, 25 November 2026", "2026-11-25"), ("3.4.99", "1999-04-03")):
            process.stdin.write(f"{line}\n".encode())
            process.stdin.flush()
            ready, _, _ = select.select([process.stdout], [], [], 240)  # only guards against a hang
            assert ready, "no answer while the pipe stays open"
            assert process.stdout.readline().decode() == expected + "\n"
        process.stdin.close()
        assert process.wait(timeout=120) == 0
    finally:
        process.kill()
        process.wait()


def test_greedy_translation_applies_min_length_and_no_repeat_ngram(translator: Translator,
                                                                     dates_run: tuple[Path, dict]) -> None:
    (plain,) = translator.translate(["1 May 2000"])
    assert translator.decode.beam_size == 1 and len(set(plain.trg_pieces)) < len(plain.trg_pieces)  # "0" repeats
    longer = Translator.from_run(dates_run[0], min_length=len(plain.trg_pieces) + 3)
    assert len(longer.translate(["1 May 2000"])[0].trg_pieces) >= len(plain.trg_pieces) + 3
    (distinct,) = Translator.from_run(dates_run[0], no_repeat_ngram=1).translate(["1 May 2000"])
    assert len(set(distinct.trg_pieces)) == len(distinct.trg_pieces)


def test_samples_depend_on_the_seed_and_the_line_not_on_the_batch(dates_run: tuple[Path, dict]) -> None:
    """--sample --nbest 3: three samples per sentence; sample n of line L comes from (seed, L, n), so translating
    again, or the line alone with its number, gives the same samples, and another seed others."""
    sources = (dates_run[0] / "data" / "test.txt").read_text(encoding="utf-8").splitlines()[:6]
    hot = {"sample": True, "nbest": 3, "temperature": 3.0}
    translator = Translator.from_run(dates_run[0], seed=7, **hot)
    together = translator.translate(sources)
    assert all(len(t.nbest) == 3 and t.text == t.nbest[0][0] for t in together)
    assert len({text for t in together for text, _ in t.nbest}) > 6  # hot samples differ from one another
    assert [t.nbest for t in translator.translate(sources)] == [t.nbest for t in together]
    (alone,) = translator.translate([sources[4]], lines=[4])
    assert [text for text, _ in alone.nbest] == [text for text, _ in together[4].nbest]
    assert [score for _, score in alone.nbest] == pytest.approx([score for _, score in together[4].nbest], abs=1e-3)
    other = Translator.from_run(dates_run[0], seed=8, **hot).translate(sources)
    assert [t.nbest for t in other] != [t.nbest for t in together]


# --- a corpus in parts, under torchrun ----------------------------------------------------------------------------

@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    """A free local port for torchrun's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port


def _corpus(dates_run: tuple[Path, dict], tmp_path: Path, n: int = 50) -> Path:
    lines = (dates_run[0] / "data" / "test.txt").read_text(encoding="utf-8").splitlines()[:n]
    lines[5] = ""  # a blank line keeps its place
    source = tmp_path / "corpus.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return source


def _torchrun(processes: int, args: list[str]) -> subprocess.CompletedProcess:
    with socket_port() as port:
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                               "--master_port", str(port), "-m", "nmt", "translate", *args],
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_torchrun_translates_in_parts_as_one_process_does(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    """Two gloo processes of one thread, parts of 7 lines, n-best lists and alignments: the very bytes one process
    writes translating the same parts, the best hypotheses those of a plain translation of the whole file (scores
    can differ in the fourth decimal between other batchings), and the parts' folder removed."""
    from nmt.cli.parts import translate_parts

    source = _corpus(dates_run, tmp_path)
    two = _torchrun(2, ["-m", str(dates_run[0]), "-i", str(source), "--beam", "3", "--nbest", "2", "--threads", "1",
                        "-o", str(tmp_path / "two.txt"), "--alignments", str(tmp_path / "two.align"),
                        "--part-lines", "7"])
    assert "joined 8 parts of 50 lines from 2 processes" in two.stderr
    assert not (tmp_path / "two.txt.parts").exists()
    translator = Translator.from_run(dates_run[0], beam_size=3, nbest=2)
    translate_parts(translator, source, tmp_path / "one.txt", tmp_path / "one.align", 0, 1, 7, nbest=2)
    assert (tmp_path / "two.txt").read_bytes() == (tmp_path / "one.txt").read_bytes()
    assert (tmp_path / "two.align").read_bytes() == (tmp_path / "one.align").read_bytes()
    lines = (tmp_path / "two.txt").read_text().splitlines()
    assert len(lines) == 100 and lines[-1].startswith("49 ||| ") and lines[10] == "5 |||  ||| -inf"
    sources = source.read_text().splitlines()
    plain = [t.text for t in translator.translate([s for s in sources if s])]
    assert [line.split(" ||| ")[1] for line in lines[::2] if not line.startswith("5 |||")] == plain


class Interrupted(Translator):
    """A translator whose second batch is cut short, as a killed process would be."""

    calls = 0

    def translate(self, *args: object, **kwargs: object) -> list:
        type(self).calls += 1
        if type(self).calls == 2:
            raise KeyboardInterrupt
        return super().translate(*args, **kwargs)


def test_parts_resume_where_a_run_stopped_and_refuse_another_input(dates_run: tuple[Path, dict], tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from nmt.cli.parts import translate_parts

    source = _corpus(dates_run, tmp_path, 30)
    plain = Translator.from_run(dates_run[0])
    translate_parts(plain, source, tmp_path / "whole.txt", None, 0, 1, 10)
    cut = Interrupted.from_run(dates_run[0])
    with pytest.raises(KeyboardInterrupt):
        translate_parts(cut, source, tmp_path / "out.txt", None, 0, 1, 10)
    assert sorted(p.name for p in (tmp_path / "out.txt.parts").iterdir()) == ["000000.txt", "run.json"]
    caplog.set_level(logging.INFO)
    translate_parts(cut, source, tmp_path / "out.txt", None, 0, 1, 10)
    assert Interrupted.calls == 4  # the two parts left, not the one written before the stop
    assert "part 1 of 3: already translated, skipped" in caplog.text
    assert (tmp_path / "out.txt").read_text() == (tmp_path / "whole.txt").read_text()
    with pytest.raises(KeyboardInterrupt):
        Interrupted.calls = 1
        translate_parts(cut, source, tmp_path / "again.txt", None, 0, 1, 10)
    source.write_text("another input\n", encoding="utf-8")
    with pytest.raises(NmtError, match=r"again.txt.parts holds parts of another translation .*: remove it"):
        translate_parts(plain, source, tmp_path / "again.txt", None, 0, 1, 10)


def test_torchrun_refuses_stdin_in_one_line(dates_run: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    from nmt.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as exit_:
        main(["translate", "-m", str(dates_run[0])])
    assert exit_.value.code == ("nmt translate: error: under torchrun nmt translate reads a file and writes one: give "
                                "-i FILE and -o FILE (processes cannot share stdin and stdout)")
