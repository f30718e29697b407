"""The command line's grammar, in one place: the options every command that loads a model shares (``-m RUN``,
``--checkpoint``, ``--device``, ``--precision``, ``--quantize``, ``--threads``), the decoding flags derived from
the ``decode`` schema, the file options (``-i`` source, ``-t`` given target, ``-r`` reference, ``--hypothesis``
translations, ``-o`` output, always paths), and old spellings that still work with a one-line deprecation
warning."""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from nmt import IMAGE_SUFFIXES, NmtError, cannot_write

REMOVED_IN = "0.3"  # the version in which the deprecated spellings go
IMAGE_FORMATS = [suffix[1:] for suffix in IMAGE_SUFFIXES]


def add_command(sub: argparse._SubParsersAction, name: str, summary: str, description: str,
                examples: Sequence[str], run: Any, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand with its one-line ``summary`` (in ``nmt --help``), its ``description`` and ``examples`` (in
    ``nmt NAME --help``), run by ``run(args)``."""
    p = sub.add_parser(name, help=summary, description=description,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n" + "\n".join(f"  {line}" for line in examples), **kwargs)
    p.set_defaults(run=run)
    return p


def warn_deprecated(old: str, new: str) -> None:
    """One line on stderr: ``old`` still works, until :data:`REMOVED_IN`; say ``new``."""
    print(f"nmt: warning: {old} is deprecated and goes in nmt {REMOVED_IN}: use {new}", file=sys.stderr)


class Deprecated(argparse.Action):
    """An old spelling of an option: stores into the new option's destination, warns once, hidden from help."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", append: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new, self.append = new, append

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        warn_deprecated(option_string or self.option_strings[0], self.new)
        if self.append:
            values = [*(getattr(namespace, self.dest, None) or []), values]
        setattr(namespace, self.dest, values)


def deprecated(p: argparse.ArgumentParser | argparse._ArgumentGroup, *old: str, new: str, dest: str,
               type: Any = Path, append: bool = False) -> None:
    """Accept ``old`` spellings of the option ``new`` (same destination), with a deprecation warning."""
    p.add_argument(*old, dest=dest, new=new, type=type, append=append, action=Deprecated, default=argparse.SUPPRESS)


def add_runs(p: argparse.ArgumentParser, several: bool = True, what: str = "", required: bool = True) -> None:
    """``-m RUN``: a training run directory; repeatable where several runs make sense (an ensemble, a plot)."""
    p.add_argument("-m", "--model", required=required, type=Path, action="append" if several else "store",
                   metavar="RUN", help=what or ("training run directory; repeat it for an ensemble of runs"
                                                if several else "training run directory"))


def add_model_options(p: argparse.ArgumentParser, checkpoint_help: str = "", quantize: bool = True,
                      engine: bool = False) -> None:
    """Where and how a loaded model runs: ``--checkpoint``, ``--device``, ``--precision``, ``--quantize``,
    ``--threads`` (and ``--engine`` where another engine can run the model)."""
    g = p.add_argument_group("model")
    if engine:
        g.add_argument("--engine", choices=["nmt", "ctranslate2"], default="nmt",
                       help="nmt (default), or ctranslate2: a Transformer exported by 'nmt export --format "
                            "ctranslate2' (-m the run holding it in ctranslate2/, or the export's folder); beam and "
                            "greedy search only, its length penalty is length^alpha (alpha 0 agrees with nmt)")
    g.add_argument("--checkpoint", action="append", metavar="NAME",
                   help=checkpoint_help or "checkpoint file in RUN (default: best.pt); with several runs once for "
                                           "all, or once per run in their order")
    g.add_argument("--device", default="auto", help="auto (a GPU when there is one, default), cpu, cuda or cuda:N")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="matrix products in fp32 or bf16; auto (default): bf16 where this hardware runs it faster "
                        "(a GPU with compute capability 8.0+; a CPU with AMX or AVX512-BF16 where a short "
                        "measurement at this model's sizes says so), logged")
    if quantize:
        g.add_argument("--quantize", choices=["int8"],
                       help="dynamic int8 quantization of linear and recurrent layers, CPU only (faster on CPUs "
                            "with VNNI; logged)")
    g.add_argument("--threads", type=int, default=0, help="CPU threads >= 0 (default 0: all cores)")


def model_place(args: argparse.Namespace) -> Any:
    """Check ``--threads``, ``--device`` and ``--quantize`` (one line each, before any model is loaded), set the
    threads, and return the device."""
    import torch

    from nmt.hardware import int8_engine, resolve_device

    if args.threads < 0:
        raise NmtError(f"--threads {args.threads}: must be an integer >= 0 (0: all cores)")
    device = resolve_device(args.device)
    if getattr(args, "quantize", None):
        int8_engine(device)  # refuses a GPU before the model is loaded
    if args.threads:
        torch.set_num_threads(args.threads)
    return device


def load_translator(args: argparse.Namespace, **decode: Any) -> Any:
    """The runs of ``-m`` (an ensemble when several) as a ``Translator``, placed as the model options say."""
    from nmt.translate import Translator

    device = model_place(args)
    runs = args.model if isinstance(args.model, list) else [args.model]
    if getattr(args, "engine", "nmt") == "ctranslate2":
        return _ctranslate2(args, runs, device, decode)
    return Translator.from_runs(runs, args.checkpoint or ["best.pt"], getattr(args, "quantize", None),
                                args.precision, device, **decode)


def _ctranslate2(args: argparse.Namespace, runs: list[Path], device: Any, decode: dict[str, Any]) -> Any:
    """``--engine ctranslate2``: the exported Transformer of the one run; what it cannot do is one line."""
    from nmt.ct2 import CTranslate2Translator

    if len(runs) > 1:
        raise NmtError("--engine ctranslate2 translates with one model: an ensemble needs nmt's own engine")
    if args.checkpoint:
        raise NmtError("--engine ctranslate2 runs the exported checkpoint: choose it with 'nmt export --checkpoint'")
    return CTranslate2Translator.load(runs[0], getattr(args, "quantize", None), args.precision, device, args.threads,
                                      attention=getattr(args, "alignments", None) is not None, **decode)


def add_decode_flags(p: argparse.ArgumentParser, exclude: Sequence[str] = ()) -> None:
    """The decoding settings as flags (``nmt.config.DecodeConfig``, each field's ``Option``) but those of
    ``exclude``; a flag not given is None: the run's own setting."""
    from nmt.config import DecodeConfig
    from nmt.decode_settings import choices, option

    group = p.add_argument_group("decoding", "default: the run's decode setting; --nbest without --beam searches "
                                             "with max(N, 5) beams")
    for key, info in DecodeConfig.model_fields.items():
        if key in exclude:
            continue
        flag = option(key).flag
        if info.annotation is bool:
            kind: dict[str, Any] = {"action": "store_const", "const": True}
        elif choices(key):
            kind = {"choices": choices(key)}
        else:
            kind = {"type": info.annotation, "metavar": flag.removeprefix("--").replace("-", "_").upper()}
        group.add_argument(flag, dest=key, help=option(key).help, **kind)


def decode_settings(args: argparse.Namespace) -> dict[str, object]:
    """The decoding settings given as flags (checked; one line naming the flag), None for the others; --nbest
    without --beam searches with max(N, 5) beams."""
    from nmt.decode_settings import KEYS, check_decode

    settings = {key: getattr(args, key, None) for key in KEYS}
    check_decode(settings, flags=True)
    if settings["nbest"] and not settings["beam_size"] and not settings["sample"]:
        settings["beam_size"] = max(settings["nbest"], 5)
    return settings


def require(args: argparse.Namespace, *options: tuple[str, str]) -> None:
    """One line for a required option not given, as (destination, flag) pairs: required by hand where an old
    spelling shares the destination (argparse's ``required`` would refuse the old spelling)."""
    for dest, flag in options:
        if getattr(args, dest, None) is None:
            raise NmtError(f"{flag} PATH is required")


def add_output(p: argparse.ArgumentParser | argparse._ArgumentGroup, what: str, default: Path | None = None) -> None:
    """``-o PATH``: where the result goes."""
    p.add_argument("-o", "--output", type=Path, default=default, metavar="PATH", help=what)


def check_input(path: Path, option: str = "-i") -> None:
    """A file to read: one line if it is missing or a folder."""
    if not path.exists():
        raise NmtError(f"{option} {path}: file not found")
    if path.is_dir():
        raise NmtError(f"{option} {path} is a folder, not a file")


def check_output(path: Path, option: str = "-o") -> None:
    """A file to write: one line if it is a folder, its folder is missing, or it cannot be written."""
    if path.is_dir():
        raise NmtError(f"{option} {path} is a folder: name a file")
    if not path.parent.is_dir():
        raise NmtError(f"{option} {path}: folder {path.parent} not found")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise NmtError(f"{option} {path}: permission denied")


def file_identity(target: Path | int) -> tuple | None:
    """What makes two names one file: (device, inode) of an existing regular file (as os.path.samefile compares
    them, through symbolic and hard links), the resolved path of a file still to be created, or None for a
    pipe, a terminal or a device, which hold nothing to lose."""
    try:
        st = os.fstat(target) if isinstance(target, int) else os.stat(target)
    except FileNotFoundError:
        return None if isinstance(target, int) else ("new", str(target.resolve()))
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def check_outputs(source: Path | None, outputs: dict[str, Path | None]) -> None:
    """Refuse, before anything is opened or created: an output into a missing folder or onto a folder, and an
    output (``{"-o": path, "--alignments": path}``, None for stdout's) that is the input or another output."""
    named: list[tuple[str, Path | int]] = [(f"{option} {path}", path) for option, path in outputs.items()
                                            if path is not None]
    for option, path in outputs.items():
        if path is not None:
            check_output(path, option)
    if outputs.get("-o", 0) is None:
        named.append(("the file stdout goes to", 1))
    what, target = (f"the input file (-i {source})", source) if source else ("the file on stdin", 0)
    for k, (name, out) in enumerate(named):
        identity = file_identity(out)
        if identity is None:
            continue
        if identity == file_identity(target):
            raise NmtError(f"{name} is {what}: writing it would destroy the input; choose another output file")
        for other, other_target in named[:k]:
            if identity == file_identity(other_target):
                raise NmtError(f"{name} is the same file as {other}: the outputs would mix; choose two files")


def open_output(files: contextlib.ExitStack, path: Path) -> TextIO:
    """Open an output file, to be closed by ``files``; a failure to open or to close it (the last flush, on a
    full disk) is one line naming it."""
    def close() -> None:
        try:
            f.close()  # closes the file even when its flush fails
        except OSError as e:
            raise cannot_write(e, path) from None

    try:
        f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by the exit stack
    except OSError as e:
        raise cannot_write(e, path) from None
    files.callback(close)
    return f
