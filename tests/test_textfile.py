"""Text files read strictly (corpora, references, hypotheses, alignments): invalid UTF-8 and mismatched parallel
files name the file and line, line endings are stripped, and lines are whole across read chunks."""

from pathlib import Path

import pytest

from nmt import NmtError, textfile
from nmt.textfile import read_lines, read_parallel


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "train.de"
    path.write_bytes(b"gut\nauch gut\nschlecht \xff\n")
    with pytest.raises(NmtError, match=r"train\.de:3: invalid UTF-8 \(invalid start byte at byte 9\)"):
        read_lines(path)


def test_line_count_mismatch_names_both_files_and_counts(tmp_path: Path) -> None:
    (tmp_path / "a.de").write_text("1\n2\n3\n")
    (tmp_path / "a.en").write_text("1\n2\n")
    with pytest.raises(NmtError, match=r"a\.de has 3 lines, .*a\.en has 2"):
        read_parallel(tmp_path / "a.de", tmp_path / "a.en")


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(NmtError, match=rf"^data file not found: {tmp_path / 'nope.txt'}$"):
        read_lines(tmp_path / "nope.txt")


def test_windows_line_endings_are_stripped(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_bytes(b"a b\r\nc\r\n\nlast")
    assert read_lines(tmp_path / "x.txt") == ["a b", "c", "", "last"]


def test_lines_are_read_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textfile, "CHUNK_BYTES", 5)
    lines = [f"Zeile {i} ü" for i in range(50)]
    (tmp_path / "x.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert read_lines(tmp_path / "x.txt") == lines
    (tmp_path / "y.txt").write_bytes("\n".join(lines[:30]).encode() + b"\n\xc3(\n")
    with pytest.raises(NmtError, match=r"y\.txt:31: invalid UTF-8"):
        read_lines(tmp_path / "y.txt")
