"""``nmt average``: the mean of a run's last checkpoints, a checkpoint that often translates better."""

from __future__ import annotations

import argparse
from pathlib import Path

from nmt import NmtError
from nmt.cli.options import add_command, add_output, add_runs, check_output, warn_deprecated

DESCRIPTION = """\
Average the model weights of a run's last N validation checkpoints (RUN/checkpoints/, kept by
train.keep_last) or of the checkpoint files given, into -o (default RUN/averaged.pt), which
`nmt translate --checkpoint averaged.pt` then uses. The run's own best.pt and last.pt are never
overwritten."""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "average", "average the weights of a run's last checkpoints (for translate --checkpoint)",
                    DESCRIPTION, [
                        "nmt average -m runs/m30k --last 5",
                        "nmt average -m runs/m30k runs/m30k/checkpoints/step-9000.pt "
                        "runs/m30k/checkpoints/step-10000.pt",
                        "nmt average -m runs/m30k -o runs/m30k/last3.pt --last 3",
                        "nmt translate -m runs/m30k --checkpoint averaged.pt -i test.de -o test.hyp --beam 5"], run)
    add_runs(p, several=False, required=False)
    p.add_argument("checkpoints", nargs="*", type=Path, metavar="CHECKPOINT",
                   help="checkpoint files (default: the last N of the run)")
    p.add_argument("--last", type=int, default=5, help="how many of the latest checkpoints, >= 1 (default 5)")
    add_output(p, "the averaged checkpoint, a .pt file (default RUN/averaged.pt)")


def _where(args: argparse.Namespace) -> tuple[Path, list[Path], Path]:
    """The run, the checkpoints given and the output, from ``-m RUN [CHECKPOINT...] [-o PATH]`` or the old
    ``RUN [CHECKPOINT...] [-o NAME]`` (NAME a file in RUN)."""
    if args.model is not None:
        return args.model, args.checkpoints, args.output or args.model / "averaged.pt"
    if not args.checkpoints:
        raise NmtError("name the run: -m RUN")
    warn_deprecated("RUN as a positional argument", "-m RUN")
    run, given = args.checkpoints[0], args.checkpoints[1:]
    output = args.output or Path("averaged.pt")
    if output.name == str(output):
        warn_deprecated(f"-o {output} (a name in the run)", f"-o {run / output}")
        output = run / output
    return run, given, output


def run(args: argparse.Namespace) -> None:
    from nmt.checkpoint import average, save, step_checkpoints

    if args.last < 1:
        raise NmtError(f"--last {args.last}: must be at least 1 (the number of latest checkpoints to average)")
    run_dir, given, out = _where(args)
    if out.suffix != ".pt" or out.name == ".pt":
        raise NmtError(f"-o {out}: must be a file ending in .pt")
    if not run_dir.is_dir():
        raise NmtError(f"run directory not found: {run_dir}")
    if out.parent.resolve() == run_dir.resolve() and out.name in ("best.pt", "last.pt"):
        raise NmtError(f"-o {out}: would overwrite the run's own {out.name}; choose another name "
                       f"(default {run_dir / 'averaged.pt'})")
    check_output(out)
    paths = given or step_checkpoints(run_dir)[-args.last:]
    save(average(paths), out)
    print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) -> {out}")
