"""``nmt train [OVERRIDES]``: Hydra's entry point around :func:`nmt.train.train`, with a pre-check that composes
and validates the config and claims the run directory before anything is created (a mistake is one line)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig

from nmt import NmtError, distributed
from nmt.config import CONF_DIR, validate
from nmt.interrupts import Interrupted
from nmt.rundir import RunDir
from nmt.train import train


def _fail(error: NmtError) -> None:
    """Exit with one line: the error, and the conventional status of an interrupting signal (1 otherwise)."""
    print(f"nmt train: {'' if isinstance(error, Interrupted) else 'error: '}{error}", file=sys.stderr)
    sys.exit(error.status if isinstance(error, Interrupted) else 1)


def _hydra_error(e: Exception) -> NmtError:
    """Hydra's composition errors on one line: an unknown option with the ones there are, a bad override."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(e, MissingConfigException) and e.missing_cfg_file and "/" in e.missing_cfg_file:
        group, option = e.missing_cfg_file.rsplit("/", 1)
        return NmtError(f"{group}={option}: no such option (choose {', '.join(e.options or [])})")
    if isinstance(e, OverrideParseException):
        return NmtError(f"cannot parse the override {e.override!r}: {e.message.splitlines()[0]}")
    return NmtError(" ".join(str(e).split("\n\n")[0].split()))


def precheck(argv: list[str]) -> list[str]:
    """Compose and validate the config ``nmt train ARGV`` asks for, and claim its run directory, before Hydra
    creates anything; a mistake is one line. Returns the arguments for Hydra (with the run directory made
    explicit, so that Hydra trains where the claim was made)."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args, _ = get_args_parser().parse_known_args(argv)
    if (args.help or args.hydra_help or args.info or args.shell_completion or args.multirun or args.config_path
            or args.experimental_rerun):
        return argv
    overrides = list(args.overrides)
    if args.config_dir:
        overrides.append(f"hydra.searchpath=[file://{os.path.abspath(args.config_dir)}]")
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name="train"):
            cfg = compose(args.config_name or "config", overrides=overrides, return_hydra_config=True)
        run_dir = Path(cfg.hydra.run.dir)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        _fail(_hydra_error(e))
    try:
        run = validate(cfg)
        if args.cfg is None and distributed.is_main_process():
            RunDir(run_dir).claim(run)
    except NmtError as e:
        _fail(e)
    return argv if args.cfg else [*argv, f"hydra.run.dir={run_dir}"]


def main(argv: list[str]) -> None:
    """``nmt train ARGV``: the pre-check, then Hydra's own entry point (which parses ARGV again, configures
    logging and the run directory) around :func:`train`."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    argv = precheck(argv)

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
    def run(cfg: DictConfig) -> None:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            train(cfg, run_dir)
        except NmtError as e:  # a user's mistake or a signal: one line, no traceback (Hydra would print one)
            _fail(e)
        if distributed.is_main_process():
            print(f"run directory: {run_dir}")

    sys.argv = [sys.argv[0], *argv]
    run()
