"""The translation API and streaming: one output line per input line, in order, whatever the input."""

import io
import logging
from pathlib import Path

import pytest

from nmt import NmtError
from nmt.translate import Translator, read_lines_replacing, translate_stream


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
