"""The commands about nmt's setting: ``info`` (versions, hardware, choices, paths), ``data`` (download a corpus)
and ``completion`` (shell completion for ``nmt``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from nmt.cli.options import add_command


def register(sub: argparse._SubParsersAction) -> None:
    info_parser(sub)
    data_parser(sub)
    p = add_command(sub, "completion", "shell completion for nmt (bash, zsh)", COMPLETION, [
        "nmt completion bash > ~/.local/share/bash-completion/completions/nmt   # bash, from the next shell on",
        'eval "$(nmt completion bash)"                # bash, this shell (or in ~/.bashrc)',
        'eval "$(nmt completion zsh)"                 # zsh, in ~/.zshrc'], run_completion)
    p.add_argument("shell", choices=["bash", "zsh"], help="the shell")


def info_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info", help="versions, extras, hardware and what nmt chooses on it, where nmt keeps its files",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print what nmt runs with on this machine: nmt's version and location; the versions of Python,\n"
                    "torch (CPU or CUDA build) and the libraries nmt uses; whether the optional extras (serve,\n"
                    "tensorboard) are installed; the CPU (model, cores, torch threads, the instruction-set flags\n"
                    "that matter for speed) and GPUs; the device, precision (training and decoding) and int8\n"
                    "engine that `auto` and `--quantize int8` choose here; and where the token cache,\n"
                    "hardware.json and the Multi30k data are. Nothing is measured: where `precision: auto` needs\n"
                    "a measurement that is not cached yet, it says so.",
        epilog="examples:\n"
               "  nmt info\n"
               "  nmt info --json > info.json\n"
               "  nmt info --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[\"torch\"])'")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> None:
    import json

    from nmt.info import collect, format_report

    info = collect()
    print(json.dumps(info, indent=1) if args.json else format_report(info))


def data_parser(sub: argparse._SubParsersAction) -> None:
    from nmt.download import CORPORA, MULTI30K

    p = sub.add_parser(
        "data", help="download a corpus (Multi30k) and verify its checksums",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Download a corpus into DIR, where the configs that use it read it. multi30k: the raw text\n"
                    "of Multi30k Task 1 (Elliott et al. 2016): English image captions of Flickr30k and their\n"
                    "translations into German, French and Czech, one sentence per line, as the data configs\n"
                    "multi30k_deen, multi30k_ende and multi30k_fren read them, from the dataset's repository:\n"
                    f"  {MULTI30K.base_url}/FILE.gz\n"
                    "Each file is downloaded gzipped, decompressed, checked against the SHA-256 recorded in nmt and\n"
                    "only then given its name. Files already in DIR that verify are kept (a second run resumes an\n"
                    "interrupted one); one that does not is refused and left as it is, unless --force. The folder is\n"
                    "printed on stdout.\n\n"
                    f"{MULTI30K.title}'s files:\n{MULTI30K.table()}\n"
                    "val is the development set. The test sets are for reporting results only: test_2016_flickr\n"
                    "(the recipes' test set) and the later test_2017_flickr, test_2017_mscoco and test_2018_flickr;\n"
                    "choose every setting (checkpoint, beam size, length penalty) on val, never on a test set.",
        epilog="examples:\n"
               f"  nmt data multi30k                # all files, into ${MULTI30K.env} or {MULTI30K.default_dir}\n"
               "  nmt data multi30k --languages de en --splits train val test_2016_flickr\n"
               "  nmt data multi30k --dir data/multi30k && nmt train experiment=multi30k_gru data.dir=data/multi30k\n"
               "  export NMT_MULTI30K=$(nmt data multi30k --dir /data/multi30k)   # then every config reads it\n"
               "  nmt data multi30k --mirror https://mirror.example.org/multi30k/task1/raw\n"
               "  nmt data multi30k --mirror file:///srv/multi30k/raw      # a folder of the .gz files")
    p.add_argument("corpus", choices=sorted(CORPORA), help="the corpus: multi30k (Multi30k Task 1)")
    p.add_argument("--dir", type=Path,
                   help=f"where the files go (default: ${MULTI30K.env} if set, else {MULTI30K.default_dir})")
    p.add_argument("--languages", nargs="+", metavar="LANG",
                   help=f"only these languages, of {' '.join(MULTI30K.languages())} (default: all)")
    p.add_argument("--splits", nargs="+", metavar="SPLIT", help="only these splits (default: all, as listed above)")
    p.add_argument("--mirror", metavar="URL",
                   help="download URL/FILE.gz instead, from a mirror of the repository's files (http://, https://, "
                        "or file:// for a local folder)")
    p.add_argument("--force", action="store_true",
                   help="replace the files in DIR whose checksum is wrong (without it they are refused)")
    p.set_defaults(run=run_data)


def run_data(args: argparse.Namespace) -> None:
    from nmt.download import CORPORA, download

    corpus = CORPORA[args.corpus]
    folder = (args.dir or corpus.folder()).expanduser()
    download(corpus, folder, corpus.select(args.splits, args.languages), base_url=args.mirror, force=args.force)
    print(os.path.abspath(folder))


COMPLETION = """\
Print a completion script for bash or zsh: commands, each command's options and their choices,
config groups and their options after `nmt train` (experiment=, model=, data=, ...), and file
names for the rest. The script is written from this nmt's own parsers, so it stays in step
with its version: print it again after an upgrade."""


def _options(parser: argparse.ArgumentParser) -> tuple[list[str], dict[str, list[str]]]:
    """A parser's option strings shown in its help, and the choices of those that have them."""
    flags: list[str] = []
    choices: dict[str, list[str]] = {}
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or not action.option_strings:
            continue
        flags += action.option_strings
        if action.choices:
            for flag in action.option_strings:
                choices[flag] = [str(c) for c in action.choices]
    return flags, choices


def _train_words() -> list[str]:
    """``group=option`` for each config group and option in ``conf/``, what ``nmt train`` composes."""
    from nmt.config import CONF_DIR

    root = Path(CONF_DIR)
    return sorted(f"{group.name}={option.stem}" for group in root.iterdir() if group.is_dir()
                  for option in group.glob("*.yaml"))


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The bash (or zsh, through bashcompinit) completion function of ``nmt``, from its ``parser``."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = list(sub.choices)
    option_cases, choice_cases = [], []
    for name, command in sub.choices.items():
        if name == "train":
            words = " ".join(["--help", *_train_words()])
        else:
            flags, choices = _options(command)
            words = " ".join(flags)
            choice_cases += [f'        "{name} {flag}") words="{" ".join(values)}" ;;'
                             for flag, values in choices.items()]
        option_cases.append(f'        {name}) words="{words}" ;;')
    lines = [
        f"# nmt {shell} completion, from `nmt completion {shell}`",
        *(["autoload -U +X bashcompinit && bashcompinit"] if shell == "zsh" else []),
        "_nmt() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" cmd="${COMP_WORDS[1]}" words=""',
        '    if [ "$COMP_CWORD" -eq 1 ]; then',
        f'        COMPREPLY=($(compgen -W "{" ".join(commands)} --help --version" -- "$cur")); return',
        "    fi",
        '    case "$cmd $prev" in',
        *choice_cases,
        "    esac",
        '    if [ -z "$words" ] && { [[ "$cur" == -* ]] || [ "$cmd" = train ]; }; then',
        '        case "$cmd" in',
        *option_cases,
        "        esac",
        "    fi",
        '    if [ -n "$words" ]; then COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        '    else COMPREPLY=($(compgen -f -- "$cur")); fi',
        "}",
        "complete -o filenames -F _nmt nmt",
    ]
    return "\n".join(lines) + "\n"


def run_completion(args: argparse.Namespace) -> None:
    from nmt.cli import build_parser

    print(completion_script(build_parser(), args.shell), end="")
