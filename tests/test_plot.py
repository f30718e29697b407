"""Attention heatmaps: a file of the requested format, with the sentence's tokens (or words) as axis labels; grids
of heads; the attention drawn during training; training curves."""

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest
import torch

from nmt import NmtError, plot
from nmt.cli import main
from nmt.gradients import gradient_map
from nmt.plot import (
    plot_attention,
    plot_dev_attention,
    plot_gradient_flow,
    plot_gradient_map,
    plot_metrics,
    plot_translation,
    select_heads,
)
from nmt.translate import Translator


@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG\r\n\x1a\n"), (".svg", b"<?xml"), (".pdf", b"%PDF-")])
def test_plot_formats(tmp_path: Path, suffix: str, magic: bytes) -> None:
    """The suffix picks the format: a PNG image of the figure's pixel size, an SVG that carries the tokens as
    text, a PDF."""
    path = plot_attention(torch.softmax(torch.randn(3, 4), -1), ["alpha", "beta", "gamma", "</s>"],
                          ["xray", "yankee", "</s>"], tmp_path / f"att{suffix}")
    data = path.read_bytes()
    assert data.startswith(magic)
    if suffix == ".png":
        width, height = struct.unpack(">II", data[16:24])
        assert width > 200 and height > 200
    if suffix == ".svg":
        text = data.decode()
        assert "<svg" in text and all(word in text for word in ("alpha", "gamma", "yankee"))


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The figures the plot functions draw, kept open for inspection (plot.plt.close captures them)."""
    captured: list[Any] = []
    monkeypatch.setattr(plot.plt, "close", captured.append)
    yield captured
    monkeypatch.undo()
    for figure in captured:
        plt.close(figure)


def test_axis_labels_are_the_tokens(tmp_path: Path, figures: list[Any]) -> None:
    plot_attention(torch.softmax(torch.randn(2, 3), -1), ["▁Hallo", "▁Welt", "</s>"], ["▁Hello", "</s>"],
                   tmp_path / "a.png")
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["▁Hallo", "▁Welt", "</s>"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["▁Hello", "</s>"]


def test_shape_mismatch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shape"):
        plot_attention(torch.zeros(2, 2), ["a"], ["b", "c"], tmp_path / "x.png")


def _labels(ax: Any) -> tuple[list[str], list[str]]:
    return [t.get_text() for t in ax.get_xticklabels()], [t.get_text() for t in ax.get_yticklabels()]


def test_word_plot_merges_pieces_into_words(tmp_path: Path, figures: list[Any]) -> None:
    attention = torch.softmax(torch.randn(4, 5), -1)  # [▁x, y, ▁z, </s>] x [▁Hun, d, ▁läuft, ., </s>]
    plot_translation(attention, ["▁Hun", "d", "▁läuft", "."], ["▁x", "y", "▁z"], tmp_path / "w.png", by_words=True)
    assert _labels(figures[0].axes[0]) == (["Hund", "läuft.", "</s>"], ["xy", "z", "</s>"])
    image = figures[0].axes[0].get_images()[0].get_array()
    merged = (attention[0, :2].sum() + attention[1, :2].sum()) / 2  # word "xy" (rows 0, 1) on word "Hund" (cols 0, 1)
    torch.testing.assert_close(torch.as_tensor(image[0, 0]).float(), merged)


def test_grid_of_heads(tmp_path: Path, figures: list[Any]) -> None:
    heads = torch.softmax(torch.randn(6, 3, 4), -1)
    path = plot_translation(heads, ["▁a", "▁b", "c"], ["▁x", "y"], tmp_path / "heads.svg",
                            panel_titles=[f"head {h}" for h in range(1, 7)])
    assert path.read_text().startswith("<?xml")
    panels = [ax for ax in figures[0].axes if ax.get_images()]
    assert [ax.get_title() for ax in panels] == [f"head {h}" for h in range(1, 7)]
    assert _labels(panels[0])[1] == ["▁x", "y", "</s>"] and _labels(panels[-1])[0] == ["▁a", "▁b", "c", "</s>"]


def test_select_heads() -> None:
    attention = torch.rand(3, 4, 2, 5)
    torch.testing.assert_close(select_heads(attention)[0], attention[2].mean(0))
    head, title = select_heads(attention, 1, 2)
    assert torch.equal(head, attention[0, 1]) and title == "layer 1, head 2"
    assert select_heads(attention, 2, every_head=True)[0].shape == (4, 2, 5)
    with pytest.raises(NmtError, match="layer 4 out of range: the model has 3 decoder layers"):
        select_heads(attention, 4)
    with pytest.raises(NmtError, match="head 0 out of range"):
        select_heads(attention, 1, 0)


def test_unknown_image_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NmtError, match=r"\.png, \.svg, \.pdf"):
        plot_attention(torch.ones(1, 1), ["a"], ["b"], tmp_path / "x.jpg")


def _metrics(run_dir: Path, scale: float) -> None:
    run_dir.mkdir()
    records = [{"split": "train", "step": s, "loss": scale * 4 / s, "tokens_per_s": 1e4, "lr": 1e-3} for s in (1, 2, 3)]
    records += [{"split": "dev", "step": s, "elapsed": 5.0 * s * scale, "loss": scale / s, "ppl": 2.7 ** (scale / s),
                 "bleu": 30 * s, "chrf": 50, "exact": 10 * s} for s in (2, 3)]
    records.append({"split": "test", "bleu": 90.0})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_metrics_of_two_runs(tmp_path: Path, figures: list[Any]) -> None:
    _metrics(tmp_path / "gru", 1.0)
    _metrics(tmp_path / "lstm", 2.0)
    path = plot_metrics([tmp_path / "gru", tmp_path / "lstm"], tmp_path / "metrics.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    loss, ppl, bleu = figures[0].axes
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["gru (train)", "gru (dev)", "lstm (train)",
                                                                      "lstm (dev)"]
    assert [t.get_text() for t in bleu.get_legend().get_texts()] == ["gru", "lstm"]
    assert list(loss.get_lines()[3].get_xdata()) == [2, 3] and list(bleu.get_lines()[0].get_ydata()) == [60, 90]
    assert ppl.get_yscale() == "log"
    (tmp_path / "gru" / "metrics.jsonl").write_text('{"split": "dev"}\nnot json\n')
    with pytest.raises(NmtError, match=r"gru/metrics.jsonl:2: not a JSON record"):
        plot_metrics([tmp_path / "gru"], tmp_path / "m.png")


def test_any_logged_metric_against_updates_and_time(tmp_path: Path, figures: list[Any]) -> None:
    """The cells comparison's figure: dev exact match against updates (top row) and seconds (bottom row)."""
    _metrics(tmp_path / "rnn", 1.0)
    _metrics(tmp_path / "gru", 2.0)
    plot_metrics([tmp_path / "rnn", tmp_path / "gru"], tmp_path / "exact.png", metrics=["exact", "bleu"],
                 against=["step", "elapsed"])
    steps, _, seconds, _ = figures[0].axes
    assert steps.get_title() == "dev exact match (%)" and seconds.get_xlabel() == "training time (s)"
    assert list(steps.get_lines()[1].get_xdata()) == [2, 3] and list(seconds.get_lines()[1].get_xdata()) == [20, 30]
    assert list(seconds.get_lines()[0].get_ydata()) == [20, 30]
    with pytest.raises(NmtError, match=r"no run logged the dev metric 'accuracy' \(logged: bleu, chrf, elapsed"):
        plot_metrics([tmp_path / "rnn"], tmp_path / "m.png", metrics=["accuracy"])


def test_gradient_map_and_flow(tmp_path: Path, figures: list[Any]) -> None:
    """The map: a log colour scale over the norms, tokens as labels; the flow: one line per model, log scale."""
    norms = torch.tensor([[1.0, 1e-3, 1e-6], [1e-2, 1.0, 1e-4]])
    plot_gradient_map(norms, ["ein", "Test", "</s>"], ["a", "test"], tmp_path / "map.png", title="rnn")
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ein", "Test", "</s>"]
    assert ax.get_images()[0].norm.vmax == 1.0 and type(ax.get_images()[0].norm).__name__ == "LogNorm"
    plot_gradient_flow({"rnn": {0: 1.0, 5: 1e-3}, "lstm": {0: 1.0, 5: 0.3}}, tmp_path / "flow.svg")
    flow = figures[1].axes[0]
    assert flow.get_yscale() == "log" and [t.get_text() for t in flow.get_legend().get_texts()] == ["rnn", "lstm"]
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG" and b"<svg" in (tmp_path / "flow.svg").read_bytes()


def test_dev_attention_plots(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    translator = Translator.from_run(dates_run[0], beam_size=5)
    paths = plot_dev_attention(translator, ["25.11.26", "the 3rd of May 1999"], tmp_path / "attention", 700)
    assert paths == [tmp_path / "attention" / "step700_1.png", tmp_path / "attention" / "step700_2.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 10_000 for p in paths)


def test_training_draws_dev_attention_at_each_validation(dates_run: tuple[Path, dict]) -> None:
    run_dir, _ = dates_run
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["split"] == "dev"]
    expected = {f"step{s}_{i}.png" for s in steps for i in (1, 2, 3)}
    assert len(expected) == 9 and {p.name for p in (run_dir / "attention").iterdir()} == expected


def test_plot_attention_command_labels(dates_run: tuple[Path, dict], tmp_path: Path,
                                       figures: list[Any]) -> None:
    for extra in ([], ["--words"]):
        main(["plot-attention", "-m", str(dates_run[0]), "--text", "Wednesday,  25 November 2026", "--beam", "3",
              "-o", str(tmp_path / "a.pdf"), *extra])
        assert (tmp_path / "a.pdf").read_bytes()[:4] == b"%PDF"
    pieces, by_words = (_labels(f.axes[0]) for f in figures)
    assert pieces == (["▁Wednesday", ",", "▁", "2", "5", "▁November", "▁", "2", "0", "2", "6", "</s>"],
                      ["▁", "2", "0", "2", "6", "-", "1", "1", "-", "2", "5", "</s>"])
    assert by_words == (["Wednesday,", "25", "November", "2026", "</s>"], ["2026-11-25", "</s>"])


def test_bleu_by_length_command(tmp_path: Path, figures: list[Any], capsys: pytest.CaptureFixture) -> None:
    src = ["ein Hund", "eine Katze sitzt auf der Matte", "ein roter Ball"]
    ref = ["a dog runs across the green grass", "a cat sits on the mat", "a red ball lies on the floor"]
    (tmp_path / "src").write_text("\n".join(src) + "\n")
    (tmp_path / "ref").write_text("\n".join(ref) + "\n")
    (tmp_path / "good.hyp").write_text("\n".join(ref) + "\n")
    (tmp_path / "bad.hyp").write_text(f"{ref[0]}\nnothing here matches\n{ref[2]}\n")
    main(["plot-length", "-i", str(tmp_path / "src"), "-r", str(tmp_path / "ref"), "--hypothesis",
          str(tmp_path / "good.hyp"), "--hypothesis", str(tmp_path / "bad.hyp"), "--labels", "good,bad",
          "--bins", "3", "-o", str(tmp_path / "len.png")])
    table = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert table[0] == ["source words", "sentences", "good", "bad"]
    assert table[1] == ["<= 3", "2", "100.00", "100.00"] and table[2] == ["> 3", "1", "100.00", "0.00"]
    assert (tmp_path / "len.png").read_bytes()[:4] == b"\x89PNG"
    (ax,) = figures[0].axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["good", "bad"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["<= 3\n(2)", "> 3\n(1)"]


def test_plot_gradients_command_draws_the_map_and_the_flow(dates_run: tuple[Path, dict], tmp_path: Path,
                                                           figures: list[Any], capsys: pytest.CaptureFixture) -> None:
    """A map labeled with the sentence's pieces and its translation, its values the library's g_ij; a curve per
    run over dev pairs (trained and --init), one point per path length."""
    run_dir = dates_run[0]
    main(["plot-gradients", "-m", str(run_dir), "--text", "25 November 2026", "-o", str(tmp_path / "map.png")])
    assert capsys.readouterr().out.strip() == str(tmp_path / "map.png")
    translator = Translator.from_run(run_dir, beam_size=1)
    t = translator.translate(["25 November 2026"])[0]
    assert _labels(figures[0].axes[0]) == ([*t.src_pieces, "</s>"], [*t.trg_pieces, "</s>"])
    expected = gradient_map(translator.model, translator.src_tok.ids(t.src_pieces),
                            translator.trg_tok.ids(t.trg_pieces))
    image = torch.as_tensor(figures[0].axes[0].get_images()[0].get_array().data)
    torch.testing.assert_close(image.float(), expected.clamp(min=1e-12), rtol=1e-4, atol=0)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for name in ("config.yaml", "spm.joint.model"):  # --init reads no checkpoint
        (fresh / name).write_bytes((run_dir / name).read_bytes())
    src, trg = run_dir / "data" / "dev.txt", run_dir / "data" / "dev.iso"
    main(["plot-gradients", "-m", str(run_dir), "-m", str(fresh), "--init", "--pairs", "4", "-i", str(src), "-t",
          str(trg), "-o", str(tmp_path / "flow.svg")])
    lines = figures[1].axes[0].get_lines()
    assert [line.get_label() for line in lines] == [f"{run_dir.name} (init)", "fresh (init)"]
    assert list(lines[0].get_ydata()) == list(lines[1].get_ydata())  # the same design and seed: the same weights
    assert (tmp_path / "flow.svg").read_bytes().startswith(b"<?xml")


@pytest.mark.parametrize(("args", "says"), [
    (["--text", "x", "--quantize", "int8"], "--quantize int8: an int8 model has no backward pass"),
    (["--text", "x", "--precision", "bf16"], "--precision bf16: gradients are measured in fp32"),
    (["--pairs", "0"], "--pairs 0: must be at least 1"),
    (["--text", "x", "-o", "map.gif"], "map.gif"),
    (["--text", "x", "-m", "other"], "a gradient map is of one run"),
    (["--line", "2"], "--line needs -i FILE"),
    (["--text", " "], "nothing to measure: --text is blank"),
])
def test_plot_gradients_refuses_mistakes_before_loading(args: list[str], says: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["plot-gradients", "-m", str(tmp_path / "no-such-run"), *args])
    message = str(exit_.value.code)
    assert message.startswith("nmt plot-gradients: error: ") and says in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []
