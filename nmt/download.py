"""Corpora ``nmt data NAME`` downloads, today Multi30k Task 1 (Elliott et al. 2016): English image captions of
Flickr30k and their translations into German, French and Czech, as raw text (one sentence per line, line N of
SPLIT.de translating line N of SPLIT.en), from the dataset's official repository.

Each file is fetched gzipped (BASE_URL/NAME.gz), decompressed while it streams into a temporary file in the target
folder, checked against the SHA-256 recorded here, and only then renamed to its name: a file under its own name is
always complete and verified. A file already present that verifies is kept (so an interrupted download resumes);
one that does not is refused, and left as it is, unless ``force``. Every failure (an unreachable source, an HTTP
error, a transfer or gzip stream that ends early, a wrong checksum) is one ``NmtError`` line naming the file and the
URL, and leaves nothing a later run would take for complete.

Multi30k's development set is ``val``. Its test sets (``test_2016_flickr``, and ``test_2017_flickr``,
``test_2017_mscoco`` and ``test_2018_flickr`` of the later shared tasks) are for reporting results only: settings
(checkpoints, beam size, length penalty) are chosen on ``val``, never on a test set.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple
from urllib.parse import urlparse

from nmt import DEFAULT_CACHE, NmtError, __version__, cannot_write

log = logging.getLogger(__name__)

MULTI30K_DIR = f"{DEFAULT_CACHE}/data/multi30k"  # the Multi30k folder without NMT_MULTI30K
TIMEOUT = 30.0  # seconds to wait for a connection, and for each read of a transfer
CHUNK_BYTES = 1 << 16  # bytes read, decompressed and written at a time
MAX_BYTES = 64 << 20  # no decompressed file of a corpus here is larger: more is not the file asked for


class Expected(NamedTuple):
    """What a decompressed file must be: its SHA-256 (hex) and, for messages and help, its line count."""

    sha256: str
    lines: int


@dataclass(frozen=True)
class Corpus:
    """A corpus of text files SPLIT.LANG: where they come from, where they go, and what each must be."""

    name: str  # as ``nmt data NAME`` and the config key ``data.download`` name it
    title: str
    base_url: str  # the files are BASE_URL/FILE.gz
    env: str  # the variable that names its folder
    default_dir: str  # its folder when the variable is unset
    files: Mapping[str, Expected]

    def folder_setting(self) -> str:
        """Its folder as a data config records it (``${nmt.corpus_dir:NAME}``): ``$ENV`` if set, else the default."""
        return os.environ.get(self.env) or self.default_dir

    def folder(self) -> Path:
        """Its folder: ``$ENV`` if set, else the default, ``~`` expanded."""
        return Path(self.folder_setting()).expanduser()

    def splits(self) -> list[str]:
        """The splits of its files, in the table's order."""
        return list(dict.fromkeys(name.rpartition(".")[0] for name in self.files))

    def languages(self) -> list[str]:
        """The languages of its files, sorted."""
        return sorted({name.rpartition(".")[2] for name in self.files})

    def select(self, splits: Sequence[str] | None = None, languages: Sequence[str] | None = None) -> list[str]:
        """Its files of ``splits`` in ``languages`` (None: all), in the table's order; an unknown split or language,
        or a choice without files, is one line."""
        for option, chosen, known in (("--splits", splits, self.splits()), ("--languages", languages,
                                                                            self.languages())):
            unknown = [value for value in chosen or () if value not in known]
            if unknown:
                raise NmtError(f"{option} {unknown[0]}: {self.title} has {', '.join(known)}")
        names = [name for name in self.files
                 if (splits is None or name.rpartition(".")[0] in splits)
                 and (languages is None or name.rpartition(".")[2] in languages)]
        if not names:
            raise NmtError(f"{self.title} has no file of {', '.join(splits or [])} in {', '.join(languages or [])}")
        return names

    def table(self) -> str:
        """Its splits, one line each: name, lines per file, languages."""
        rows = []
        for split in self.splits():
            names = [name for name in self.files if name.rpartition(".")[0] == split]
            languages = " ".join(name.rpartition(".")[2] for name in names)
            rows.append(f"  {split:<18} {self.files[names[0]].lines:>6,} lines  {languages}")
        return "\n".join(rows)

    def check(self, folder: Path, names: Iterable[str], alternative: str | None = "data.dir=DIR") -> None:
        """Nothing if ``folder`` holds the files ``names``; else the one line of :meth:`not_found`."""
        if not folder.is_dir():
            raise self.not_found(folder, alternative=alternative)
        for name in names:
            if not (folder / name).is_file():
                raise self.not_found(folder, f"no {name}", alternative)

    def not_found(self, folder: Path, detail: str = "", alternative: str | None = "data.dir=DIR") -> NmtError:
        """The one line for the corpus (or one of its files, ``detail``) missing from ``folder``: the command that
        downloads it there, or how to point at another copy (the variable, or the caller's ``alternative``)."""
        command = f"nmt data {self.name}"
        if folder != self.folder():
            command += f" --dir {folder}"
        what = f" ({detail})" if detail else ""
        other = f" or {alternative}" if alternative else ""
        return NmtError(f"{self.title} not found in {folder}{what}: download it with '{command}' "
                        f"(or set {self.env}{other})")


def _parse_table(table: str) -> dict[str, Expected]:
    """'SHA-256  NAME  LINES' rows, as the ``files`` of a corpus."""
    rows = (line.split() for line in table.strip().splitlines())
    return {name: Expected(digest, int(lines)) for digest, name, lines in rows}


MULTI30K = Corpus(
    name="multi30k", title="Multi30k", env="NMT_MULTI30K", default_dir=MULTI30K_DIR,
    base_url="https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw",
    files=_parse_table("""
        2be68b38c8d586ff4f54eb13cc6e1baaaa053695b3f070d3038303a47f2268da  train.cs  29000
        2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72  train.de  29000
        460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6  train.en  29000
        5925a3c18f1587b6b54b87743106e6e8ab93618edb6f65d19eac0621f853a10d  train.fr  29000
        d53827e469b0a1ca8d57e9e26b2b64c4bc4b33f5479c7b03ae87ae5c882c3e33  val.cs  1014
        660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660  val.de  1014
        1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227  val.en  1014
        5304e444d842e962b2dda4d816b70b22a1765b15401642b7ca37a67477e708dc  val.fr  1014
        45adb85f688de8407fddcbe1b36dca15d12aab868149b337e2576f2d6d2ff8d8  test_2016_flickr.cs  1000
        4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16  test_2016_flickr.de  1000
        399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182  test_2016_flickr.en  1000
        cb3160d69b002bb638e66cc7612fcd56cb0af82eadc9c142dedc438afb885ef6  test_2016_flickr.fr  1000
        c3078bc3b36808bf9d20eb2347ed6137016179ef59ec0d2b9b8ecc3fb2880081  test_2017_flickr.de  1000
        ce1450ddc5ab0834502579d77a170849952e15a2938b34cc503bdc25ebb4fb98  test_2017_flickr.en  1000
        6f3764e31dac41e9455e612958bcfd4e877c5e15cd66df2c2b2be6d9bd83e5b6  test_2017_flickr.fr  1000
        58277df3c75f92f7145a11b910b553d1cf82c439249d4dc237c899609eafac22  test_2017_mscoco.de  461
        43051fdfa86fd5395182e718a94ca67b1b227b9f7c79596ff0f6b813216981d2  test_2017_mscoco.en  461
        39cde3f43f32b0a6bf29ce4917a46329ff32e53070c2fac87506695a740ae0a0  test_2017_mscoco.fr  461
        1db59fe6980c9b3f9bade65122a985e71150214837d76f4768a5a8384c0b2dc7  test_2018_flickr.cs  1071
        39fcc8b3331d76fb42d648d019c6898b0d5e58baac87bc2a0bb93f44ec8db207  test_2018_flickr.de  1071
        4e585c2dd525911a6ea7730e9d0b516239af3f1b1ffae6a2130223cfb639f25e  test_2018_flickr.en  1071
        234b4a887da0da4801a3e2c6f21336231ff7dd46daeb80cfa1b551c8bbb78239  test_2018_flickr.fr  1071
    """))

CORPORA = {MULTI30K.name: MULTI30K}  # what ``nmt data`` and ``data.download`` may name


def sha256(path: Path) -> str:
    """The SHA-256 (hex) of a file; an unreadable one is one line naming it."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                digest.update(chunk)
    except OSError as e:
        raise NmtError(f"cannot read {path}: {e.strerror or e}") from None
    return digest.hexdigest()


def download(corpus: Corpus, folder: Path, names: Sequence[str], base_url: str | None = None, force: bool = False,
             timeout: float = TIMEOUT) -> list[Path]:
    """Make ``folder`` hold the files ``names`` of ``corpus``, each verified: a present file that verifies is kept,
    any other is downloaded from BASE_URL/NAME.gz (default: the corpus's own source). A present file that does not
    verify is refused, before anything is downloaded, unless ``force``. Returns the files downloaded."""
    base = (base_url or corpus.base_url).rstrip("/")
    if urlparse(base).scheme not in ("http", "https", "file"):
        raise NmtError(f"{base_url}: not an http://, https:// or file:// URL")
    if folder.exists() and not folder.is_dir():
        raise NmtError(f"{folder} is a file, not a folder")
    todo, wrong = [], []
    for name in names:
        path = folder / name
        if not path.exists():
            todo.append(name)
        elif sha256(path) == corpus.files[name].sha256:
            log.info("%s: present, SHA-256 verified", path)
        else:
            todo.append(name)
            wrong.append(path)
    if wrong and not force:
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise NmtError(f"{wrong[0]} is not {corpus.title}'s {wrong[0].name}: its SHA-256 differs{more}; left as it "
                       f"is (move it away, or replace it with --force)")
    if todo:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise cannot_write(e, folder) from None
    done = []
    for name in todo:
        done.append(_fetch(f"{base}/{name}.gz", folder / name, corpus.files[name], timeout))
    log.info("%s: %d files in %s (%d downloaded)", corpus.title, len(names), folder, len(done))
    return done


class _Transfer:
    """A response body read through, counting its bytes: a failed read, or an end before the Content-Length the
    server declared, is one line naming the file and the URL."""

    def __init__(self, response: BinaryIO, declared: int | None, name: str, url: str, timeout: float) -> None:
        import http.client

        self.response, self.declared, self.name, self.url, self.timeout = response, declared, name, url, timeout
        self.errors = (OSError, http.client.HTTPException)  # a socket's, or a chunked transfer's (IncompleteRead)
        self.received = 0

    def read(self, size: int) -> bytes:
        try:
            data = self.response.read(size)
        except self.errors as e:
            raise NmtError(f"the download of {self.name} from {self.url} broke off after {self.received:,} bytes: "
                           f"{_reason(e, self.timeout)}") from None
        if not data and size and self.declared is not None and self.received < self.declared:
            raise NmtError(f"the download of {self.name} from {self.url} ended after {self.received:,} of "
                           f"{self.declared:,} bytes")
        self.received += len(data)
        return data


def _reason(error: BaseException, timeout: float) -> str:
    """Why a connection or a read failed, in a few words."""
    reason = getattr(error, "reason", error)
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _fetch(url: str, path: Path, expected: Expected, timeout: float) -> Path:
    """Stream URL (gzipped) into a temporary file beside ``path``, decompressing and hashing it, and rename it to
    ``path`` once its SHA-256 is the one expected; on any failure the temporary file is removed."""
    import http.client
    import urllib.error
    import urllib.request

    name = path.name
    request = urllib.request.Request(url, headers={"User-Agent": f"nmt/{__version__}"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        raise NmtError(f"cannot download {name} from {url}: HTTP {e.code} {e.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise NmtError(f"cannot download {name} from {url}: {_reason(e, timeout)}") from None
    length = response.headers.get("Content-Length", "")
    transfer = _Transfer(response, int(length) if length.isdigit() else None, name, url, timeout)
    part = path.with_name(f".{name}.{os.urandom(4).hex()}.part")
    try:
        with response:
            digest, lines, size = _inflate(transfer, part, url)
        if digest != expected.sha256:
            raise NmtError(f"{name} from {url} is not the file expected: SHA-256 {digest[:12]}... ({lines:,} lines), "
                           f"not {expected.sha256[:12]}... ({expected.lines:,} lines); not saved")
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    log.info("%s: %s lines, %.1f MB, SHA-256 verified (%s)", path, f"{lines:,}", size / 1e6, url)
    return path


def _inflate(transfer: _Transfer, part: Path, url: str) -> tuple[str, int, int]:
    """Decompress the gzip stream of ``transfer`` into the new file ``part``: its SHA-256, lines and bytes."""
    name = transfer.name
    digest, lines, size = hashlib.sha256(), 0, 0
    try:
        out = open(part, "xb")  # noqa: SIM115 - closed below, also on failure
    except OSError as e:
        raise cannot_write(e, part) from None
    with out, gzip.GzipFile(fileobj=transfer, mode="rb") as stream:
        while True:
            try:
                chunk = stream.read(CHUNK_BYTES)
            except EOFError:
                raise NmtError(f"the gzip stream of {name} from {url} ends early, after {transfer.received:,} bytes: "
                               f"a truncated file") from None
            except (OSError, zlib.error) as e:
                raise NmtError(f"{name} from {url} is not gzip data ({e})") from None
            if not chunk:
                break
            digest.update(chunk)
            lines += chunk.count(b"\n")
            size += len(chunk)
            if size > MAX_BYTES:
                raise NmtError(f"{name} from {url} is over {MAX_BYTES >> 20} MiB decompressed: not the file expected")
            try:
                out.write(chunk)
            except OSError as e:
                raise cannot_write(e, part) from None
        try:
            out.flush()
            os.fsync(out.fileno())
        except OSError as e:
            raise cannot_write(e, part) from None
    return digest.hexdigest(), lines, size
