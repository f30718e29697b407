"""The command line's grammar: every subcommand's --help walked and checked (one flag for one thing everywhere, the
model options wherever a model runs, examples that parse), old spellings that still work with one warning line,
and shell completion that a real bash runs."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from nmt.cli import build_parser, main
from nmt.cli.environment import completion_script
from nmt.decode_settings import KEYS, option

PARSER = build_parser()
SUB = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction))
COMMANDS = {name: p for name, p in SUB.choices.items() if name != "train"}
SAME = {"-m": "--model", "-i": "--input", "-o": "--output", "-r": "--reference", "-t": "--target", "-h": "--help"}
OLD = {"--ref", "--hyp", "--src", "--source", "--gold", "--pred", "-s"}
RUNS_A_MODEL = {"translate", "plot-attention", "plot-gradients", "score", "align", "serve"}
DECODES = {"translate", "plot-attention", "serve"}


def _visible(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions if a.help != argparse.SUPPRESS for s in a.option_strings}


@pytest.mark.parametrize("name", COMMANDS)
def test_help_follows_the_grammar(name: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([name, "-h"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: nmt {name}") and "\nexamples:\n" in text
    flags = _visible(COMMANDS[name])
    assert flags["-h"].dest == "help"
    for short, long in SAME.items():
        if short in flags or long in flags:
            assert flags.get(short) is flags.get(long), (name, short, long)
    for path_flag in ("-i", "-o", "-r"):
        if path_flag in flags:
            assert flags[path_flag].type is Path and flags[path_flag].metavar == "PATH", (name, path_flag)
    if "-m" in flags:
        assert flags["-m"].metavar in ("RUN", "[NAME=]RUN")
    assert not OLD & set(flags), (name, OLD & set(flags))
    if name in RUNS_A_MODEL:
        assert {"--checkpoint", "--device", "--precision", "--threads", "--quantize"} <= set(flags), name
    if name in DECODES:
        assert {option(key).flag for key in KEYS if not (name == "plot-attention" and key == "nbest")} <= set(flags)


def _examples(name: str) -> list[list[str]]:
    """The example command lines of ``nmt NAME --help`` that are one nmt NAME command, as argument lists (up to
    the first pipe, redirection, ``&&`` or comment)."""
    lines = COMMANDS[name].epilog.split("examples:\n", 1)[1].splitlines()
    commands = []
    for line in lines:
        words = shlex.split(line.strip(), comments=True) if line.strip().startswith("nmt ") else []
        if words[:2] != ["nmt", name] or line.rstrip().endswith("\\"):
            continue
        end = next((k for k, w in enumerate(words) if w in ("|", "&&", ">", "<")), len(words))
        commands.append(words[1:end])
    return commands


@pytest.mark.parametrize("name", COMMANDS)
def test_every_example_parses(name: str) -> None:
    examples = _examples(name)
    assert examples, name
    for words in examples:
        args = PARSER.parse_args(words)
        assert args.command == name


def _text(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def test_old_spellings_work_with_one_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ref = _text(tmp_path, "ref", ["a small test", "another one"])
    hyp = _text(tmp_path, "hyp", ["a small test", "another two"])

    def run(args: list[str]) -> tuple[str, list[str]]:
        main(args)
        captured = capsys.readouterr()
        return captured.out, captured.err.splitlines()

    new, warnings = run(["evaluate", "-r", str(ref), "--hypothesis", str(hyp)])
    assert warnings == [] and new.startswith("BLEU ")
    for old_args, old in ((["--ref", str(ref), "--hyp", str(hyp)], ["--ref", "--hyp"]),
                          (["-r", str(ref), "-h", str(hyp)], ["-h FILE (translations)"])):
        out, warnings = run(["evaluate", *old_args])
        assert out == new
        assert [w.split(" is deprecated")[0] for w in warnings] == [f"nmt: warning: {o}" for o in old]
        assert all("goes in nmt 0.3: use" in w for w in warnings)
    gold, pred = _text(tmp_path, "gold", ["0-0 1-1"]), _text(tmp_path, "pred", ["0-0 1-0"])
    new, _ = run(["evaluate-alignment", "-r", str(gold), "--hypothesis", str(pred)])
    out, warnings = run(["evaluate-alignment", "--gold", str(gold), "--pred", str(pred)])
    assert out == new and new.startswith("AER 50.00") and len(warnings) == 2
    src = _text(tmp_path, "src", ["ein kleiner test", "noch einer"])
    new, _ = run(["plot-length", "-i", str(src), "-r", str(ref), "--hypothesis", str(hyp),
                  "-o", str(tmp_path / "a.png")])
    out, warnings = run(["plot-length", "-s", str(src), "--ref", str(ref), str(hyp), "-o", str(tmp_path / "b.png")])
    assert out.splitlines()[:-1] == new.splitlines()[:-1] and len(warnings) == 3


def test_completion_in_bash_offers_commands_flags_choices_and_configs(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    script = tmp_path / "nmt.bash"
    script.write_text(completion_script(PARSER, "bash"))

    def complete(*words: str) -> list[str]:
        line = " ".join(shlex.quote(w) for w in ("nmt", *words))
        probe = (f"source {shlex.quote(str(script))}; COMP_WORDS=({line}); COMP_CWORD={len(words)}; _nmt; "
                 "printf '%s\\n' \"${COMPREPLY[@]}\"")
        done = subprocess.run([bash, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert set(complete("")) == {*SUB.choices, "--help", "--version"}
    assert complete("plot-g") == ["plot-gradients"]
    for name, p in COMMANDS.items():
        assert set(complete(name, "-")) == set(_visible(p)), name
    assert complete("translate", "--precision", "") == ["auto", "fp32", "bf16"]
    assert "experiment=multi30k_gru" in complete("train", "exp")
    (tmp_path / "corpus.de").write_text("x\n")
    assert complete("translate", "-i", "corp") == ["corpus.de"]
    zsh = completion_script(PARSER, "zsh")
    assert zsh.splitlines()[1] == "autoload -U +X bashcompinit && bashcompinit" and "complete -o filenames" in zsh
