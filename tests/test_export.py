"""``nmt export --format ctranslate2`` and ``--engine ctranslate2``: a Transformer trained on the date task, written
for CTranslate2, translates as nmt's own search does; what cannot be exported or run there is one line."""

import shutil
import sys
from pathlib import Path

import pytest

from nmt import NmtError
from nmt.cli import main
from nmt.ct2 import CTranslate2Translator
from nmt.export import export_ctranslate2
from nmt.rundir import RunDir
from nmt.translate import Translator
from tests.conftest import run_config

pytest.importorskip("ctranslate2", reason="ctranslate2 is not installed (pip install 'nmt-attention[ctranslate2]')")


def sources(run_dir: Path) -> list[str]:
    return (run_dir / "data" / "test.txt").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("beam", [1, 5])
def test_the_export_translates_as_nmt_does(transformer_dates_run: Path, tmp_path: Path, beam: int) -> None:
    """Greedy search and beam search without length penalty: the same translations on at least 99% of the lines
    (all 300 where measured), with the same scores; int8 stays close to float32."""
    out = export_ctranslate2(transformer_dates_run, tmp_path / "ct2")
    assert {"model.bin", "config.json", "source.model", "target.model", "nmt.json"} <= {p.name for p in out.iterdir()}
    lines = sources(transformer_dates_run)
    ours = Translator.from_run(transformer_dates_run, beam_size=beam, alpha=0.0).translate(lines)
    theirs = CTranslate2Translator.load(out, beam_size=beam, alpha=0.0, threads=1).translate(lines)
    same = [(a, b) for a, b in zip(ours, theirs, strict=True) if a.text == b.text]
    assert len(same) >= 0.99 * len(lines)
    assert max(abs(a.score - b.score) for a, b in same) < 1e-3
    assert len({a.text for a in ours}) > 50  # the model translates, it does not repeat one date
    int8 = CTranslate2Translator.load(out, quantize="int8", beam_size=beam, alpha=0.0, threads=1).translate(lines)
    assert sum(a.text == b.text for a, b in zip(theirs, int8, strict=True)) >= 0.9 * len(lines)


def test_translate_with_the_engine_from_the_command_line(transformer_dates_run: Path, tmp_path: Path) -> None:
    """``nmt export`` into the run, then ``nmt translate --engine ctranslate2`` on a file: nmt's own output, with
    alignments; a second export without --force, sampling and an ensemble are refused in one line."""
    run = tmp_path / "run"
    shutil.copytree(transformer_dates_run, run)
    main(["export", "--format", "ctranslate2", "-m", str(run)])
    assert (run / "ctranslate2" / "model.bin").is_file()
    src = tmp_path / "src.txt"
    src.write_text("\n".join(sources(run)[:40]) + "\n", encoding="utf-8")
    main(["translate", "-m", str(run), "-i", str(src), "-o", str(tmp_path / "nmt.hyp"), "--beam", "1"])
    main(["translate", "-m", str(run), "--engine", "ctranslate2", "-i", str(src), "-o", str(tmp_path / "ct2.hyp"),
          "--beam", "1", "--alignments", str(tmp_path / "ct2.align")])
    ours = (tmp_path / "nmt.hyp").read_text().splitlines()
    theirs = (tmp_path / "ct2.hyp").read_text().splitlines()
    assert len(theirs) == 40 and sum(a == b for a, b in zip(ours, theirs, strict=True)) >= 39
    links = (tmp_path / "ct2.align").read_text().splitlines()
    assert len(links) == 40 and all(line and "-" in line for line in links)
    with pytest.raises(SystemExit, match="exists: choose another -o, or replace it with --force"):
        main(["export", "--format", "ctranslate2", "-m", str(run)])
    with pytest.raises(SystemExit, match="does not sample"):
        main(["translate", "-m", str(run), "--engine", "ctranslate2", "--sample", "-i", str(src)])
    with pytest.raises(SystemExit, match="an ensemble needs nmt's own engine"):
        main(["translate", "-m", str(run), "-m", str(run), "--engine", "ctranslate2", "-i", str(src)])


def test_force_replaces_only_a_complete_export(transformer_dates_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ct2"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(NmtError, match="exists"):
        export_ctranslate2(transformer_dates_run, out)
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(NmtError, match=r"missing\.pt"):
        export_ctranslate2(transformer_dates_run, out, checkpoint_name="missing.pt", force=True)
    assert (out / "keep.txt").read_text() == "mine"  # a failed export leaves the old folder as it was
    export_ctranslate2(transformer_dates_run, out, force=True)
    assert not (out / "keep.txt").exists() and (out / "model.bin").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["ct2"]  # no staging folder left behind


def test_a_recurrent_run_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "gru").mkdir()
    RunDir(tmp_path / "gru").save_config(run_config())
    with pytest.raises(NmtError, match=r"recurrent model \(bahdanau_gru_small\): CTranslate2 runs Transformers only"):
        export_ctranslate2(tmp_path / "gru", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_run_without_an_export_names_the_command(transformer_dates_run: Path, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    RunDir(tmp_path / "run").save_config(run_config(["model=transformer_small"]))
    with pytest.raises(NmtError, match=r"has no CTranslate2 model: write it with 'nmt export --format ctranslate2"):
        CTranslate2Translator.load(tmp_path / "run")


def test_without_ctranslate2_one_line_names_the_install(transformer_dates_run: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 raises ImportError
    with pytest.raises(NmtError, match=r"^CTranslate2 is not installed: pip install 'nmt-attention\[ctranslate2\]'$"):
        export_ctranslate2(transformer_dates_run, tmp_path / "out")
    assert not (tmp_path / "out").exists()
