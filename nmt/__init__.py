"""nmt: neural machine translation with attention, from the plain RNN to the Transformer."""

import errno
import importlib.util
import os
from pathlib import Path

__version__ = "0.2.0"  # the one source of the version: pyproject.toml reads it
DISTRIBUTION = "nmt-attention"  # the name on the package index
# the optional extras: each distribution with the module it installs
EXTRAS = {"serve": {"fastapi": "fastapi", "uvicorn": "uvicorn", "python-multipart": "python_multipart"},
          "tensorboard": {"tensorboard": "tensorboard"}, "ctranslate2": {"ctranslate2": "ctranslate2"}}
IMAGE_SUFFIXES = (".png", ".svg", ".pdf")  # the image formats of every plot, chosen by the file's suffix
# nmt's log lines on stderr, for every command (`nmt train` sets the same through Hydra: conf/config.yaml)
LOG_FORMAT, LOG_DATE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"
# nmt's folder outside run directories: the token cache and hardware.json ($NMT_CACHE moves them), and by default
# the corpora `nmt data` downloads (DEFAULT_CACHE/data/)
CACHE_ENV, DEFAULT_CACHE = "NMT_CACHE", "~/.cache/nmt"


class NmtError(Exception):
    """An error a user can fix (a missing file, bad input, a wrong setting); the CLI prints it on one line."""


def cache_folder() -> str:
    """nmt's cache folder: ``$NMT_CACHE`` if set, else ``DEFAULT_CACHE``, as a config records it (``~`` unexpanded)."""
    return os.environ.get(CACHE_ENV) or DEFAULT_CACHE


def cannot_write(error: OSError, name: object) -> NmtError:
    """The one-line error for a failed write of ``name``: a full disk says so."""
    if error.errno == errno.ENOSPC:
        return NmtError(f"no space left on the device while writing {name}")
    return NmtError(f"cannot write {name}: {error.strerror or error}")


def check_image_path(path: Path) -> None:
    """A one-line error unless the suffix of ``path`` names an image format nmt writes."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise NmtError(f"cannot write {path}: the image format follows the suffix, one of {', '.join(IMAGE_SUFFIXES)}")


def missing(extra: str) -> list[str]:
    """The distributions of the optional ``extra`` (a key of ``EXTRAS``) whose modules cannot be imported here."""
    return [dist for dist, module in EXTRAS[extra].items() if importlib.util.find_spec(module) is None]


def install_hint(extra: str) -> str:
    """The command that installs the optional ``extra``."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
