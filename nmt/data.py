"""Parallel corpora through HuggingFace ``datasets``: a split as a ``Dataset`` of ("src", "trg") strings, read from
text, TSV or JSON-lines files or from the hub; its tokenisation cached as memory-mapped Arrow; and the filtering of
training pairs. Bad input is an error naming the file and line.

Formats (``data.format``), for the split ``data.splits[SPLIT]`` called NAME:

    text    DIR/NAME.SRC_LANG and DIR/NAME.TRG_LANG, one sentence per line (line N translates line N)
    tsv     DIR/NAME.tsv, one pair per line: source<TAB>target
    jsonl   DIR/NAME.jsonl, one object per line: {"src": ..., "trg": ...} or {"translation": {SRC_LANG: ..., ...}},
            the values strings (read as written: nothing is inferred, so "2026-11-25" stays a string)
    hub     the dataset ``data.hub.name`` (config ``data.hub.config``) in the hub's translation format, split NAME
            (which may slice, e.g. ``train[-1000:]``); a local directory in that format loads the same way

Everything converted or tokenised lives in ``data.cache_dir`` (nmt's cache folder), keyed by what it was made from,
so a second run reads memory-mapped Arrow files instead of the corpus. Cache files are written under a temporary name
and renamed, so runs can share the cache; a damaged one is built again. A split without pairs is an error naming its
file. The functions take the typed ``data`` group, ``nmt.config.DataConfig``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa

from nmt import NmtError, dates
from nmt.download import CORPORA
from nmt.textfile import file_chunks, mismatch

if TYPE_CHECKING:
    from datasets import Dataset

    from nmt.config import DataConfig, HubConfig
    from nmt.tokenizer import Tokenizer

log = logging.getLogger(__name__)

HUB_TIMEOUT = 3.0  # seconds to wait for the hub before saying it cannot be reached
LOCAL_HINT = "to use local files instead, set data.format=text|tsv|jsonl data.dir=DIR"


def prepare(cfg: DataConfig, run_dir: Path) -> Path | None:
    """The folder holding the corpus files (None for the hub); the generated date task is written into the run
    directory."""
    if cfg.generate == "dates":
        out = run_dir / "data"
        if not (out / f"{cfg.splits.train}.{cfg.src_lang}").exists():
            dates.write_splits(out, {split_name(cfg, s): n for s, n in (cfg.sizes or {}).items()}, cfg.seed,
                               cfg.src_lang, cfg.trg_lang)
        return out
    if cfg.format == "hub":
        return None
    path = Path(str(cfg.dir)).expanduser()
    if not path.is_dir():
        if cfg.download:
            raise CORPORA[cfg.download].not_found(path)
        raise NmtError(f"data directory not found: {path} (set data.dir=...)")
    return path


def split_name(cfg: DataConfig, split: str) -> str:
    """The name of ``split`` (train, dev or test) in the corpus: ``data.splits.SPLIT``."""
    return str(getattr(cfg.splits, split))


def split_files(cfg: DataConfig, data_dir: Path, split: str) -> tuple[Path, ...]:
    """The files of ``split`` (train, dev or test): ``val.de`` and ``val.en`` (text), or ``val.tsv`` / ``val.jsonl``."""
    name = split_name(cfg, split)
    if cfg.format == "text":
        return data_dir / f"{name}.{cfg.src_lang}", data_dir / f"{name}.{cfg.trg_lang}"
    if cfg.format == "hub":
        raise NmtError("a hub dataset has no split files")
    return (data_dir / f"{name}.{cfg.format}",)


def describe(cfg: DataConfig, data_dir: Path | None, split: str) -> str:
    """Where ``split`` comes from, for messages: its (source) file, or the hub dataset and split."""
    if cfg.hub is not None and cfg.format == "hub":
        config = cfg.hub.config
        return f"{cfg.hub.name}{f' ({config})' if config else ''} {split_name(cfg, split)}"
    assert data_dir is not None
    return str(split_files(cfg, data_dir, split)[0])


def cache_dir(cfg: DataConfig) -> Path:
    """The folder of converted and tokenised data (``data.cache_dir``)."""
    return Path(cfg.cache_dir).expanduser()


def _stat(path: Path) -> list:
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def _signature(paths: Iterable[Path]) -> str:
    """A short hash of files' absolute paths, sizes and modification times."""
    return _hash([_stat(path.resolve()) for path in paths])


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:20]


def _arrow_file(out: Path, names: list[str], columns: Iterable[list[list[str]]]) -> Path:
    """Write string columns chunk by chunk into the Arrow file ``out`` (unless it exists), atomically."""
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([(name, pa.string()) for name in names])
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for chunk in columns:
                writer.write_batch(pa.record_batch([pa.array(c, pa.string()) for c in chunk], schema=schema))
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _open_cached(out: Path) -> Dataset | None:
    """The cached Arrow file ``out`` as a dataset; None when there is none, or when it is damaged (cut short by a
    crash or a full disk, overwritten), in which case it is removed, to be built again."""
    from datasets import Dataset

    if not out.exists():
        return None
    try:
        return Dataset.from_file(str(out))
    except Exception as e:  # pyarrow and datasets raise many kinds for a damaged file: all mean "build it again"
        log.warning("damaged cache file %s (%s): building it again", out, _first_line(e))
        out.unlink(missing_ok=True)
        return None


def _cached_columns(out: Path, names: list[str], columns: Callable[[], Iterable[list[list[str]]]]) -> Dataset:
    """The Arrow file ``out`` as a dataset, written from ``columns()`` first when missing or damaged."""
    from datasets import Dataset

    ds = _open_cached(out)
    return ds if ds is not None else Dataset.from_file(str(_arrow_file(out, names, columns())))


def _text_dataset(path: Path, cache: Path, column: str) -> Dataset:
    """One text file as a one-column dataset, converted to Arrow once per (path, size, mtime)."""
    if not path.is_file():
        raise NmtError(f"data file not found: {path}")
    ds = _cached_columns(cache / "text" / f"{_signature([path])}.arrow", ["text"],
                         lambda: ([lines] for lines in file_chunks(path)))
    return ds.rename_column("text", column)


def _tsv_columns(path: Path) -> Iterator[list[list[str]]]:
    number = 0
    for lines in file_chunks(path):
        src, trg = [], []
        for line in lines:
            number += 1
            fields = line.split("\t")
            if len(fields) != 2:
                raise NmtError(f"{path}:{number}: expected 2 tab-separated columns (source<TAB>target), "
                               f"found {len(fields)}")
            src.append(fields[0])
            trg.append(fields[1])
        yield [src, trg]


def _json_pair(record: Any, src: str, trg: str, path: Path, number: int) -> tuple[str, str]:
    """The (source, target) strings of one JSON Lines record: {"src": ..., "trg": ...} or
    {"translation": {SRC: ..., TRG: ...}}."""
    where = f"{path}:{number}"
    if not isinstance(record, dict):
        raise NmtError(f"{where}: expected a JSON object, found {type(record).__name__}")
    if "src" in record or "trg" in record:
        keys, values = ("src", "trg"), record
    elif isinstance(record.get("translation"), dict):
        values, keys = record["translation"], (src, trg)
        if src not in values or trg not in values:
            raise NmtError(f"{path}: the translations are in {', '.join(map(str, values))}, not {src} and {trg} "
                           f"(line {number}; set data.src_lang and data.trg_lang)")
    else:
        raise NmtError(f"{where}: expected keys src and trg, or translation ({{{src!r}: ..., {trg!r}: ...}}); "
                       f"found {', '.join(map(str, record)) or 'none'}")
    for key in keys:
        if key not in values:
            raise NmtError(f"{where}: no {key!r} (a record needs both src and trg)")
        if not isinstance(values[key], str):
            raise NmtError(f"{where}: {key!r} is {json.dumps(values[key])[:40]}, not a string")
    return values[keys[0]], values[keys[1]]


def _jsonl_columns(path: Path, src: str, trg: str) -> Iterator[list[list[str]]]:
    """The source and target strings of a JSON Lines file, chunk by chunk, exactly as written (no type is
    inferred: an ISO date stays a string); blank lines are skipped; a bad record is an error naming its line."""
    number = 0
    for lines in file_chunks(path):
        sources, targets = [], []
        for line in lines:
            number += 1
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise NmtError(f"{path}:{number}: not valid JSON ({e.msg} at column {e.colno})") from None
            s, t = _json_pair(record, src, trg, path, number)
            sources.append(s)
            targets.append(t)
        yield [sources, targets]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _unreachable(url: str, timeout: float = HUB_TIMEOUT) -> str | None:
    """Why ``url`` gives no answer within ``timeout`` seconds (any HTTP status is an answer), or None."""
    host = urlparse(url).netloc or url
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)
        except Exception as e:
            outcome.append(f"{host}: {getattr(e, 'reason', e)}")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"{host}: no answer within {timeout:g} s"


def _hub_dataset(hub: HubConfig, split_name: str, cache: Path) -> Dataset:
    """A split of a hub dataset (or of a local directory in the hub's layout); fails fast when offline."""
    import datasets

    name, config = hub.name, hub.config
    where = repr(name) + (f" ({config})" if config else "")
    local = Path(name).expanduser()
    if local.is_dir():  # keyed by its files, which datasets does not check for changes
        path = str(local)
        target = cache / "datasets" / _signature(sorted(p for p in local.rglob("*") if p.is_file()))
    else:
        path, target = name, cache / "datasets"
        if not datasets.config.HF_HUB_OFFLINE and (reason := _unreachable(datasets.config.HF_ENDPOINT)):
            raise NmtError(f"could not reach the Hugging Face hub to load dataset {where}: {reason}; {LOCAL_HINT}")
    try:
        return datasets.load_dataset(path, config, split=split_name, cache_dir=str(target))
    except ConnectionError as e:  # offline (HF_HUB_OFFLINE) without a cached copy, or the connection failed
        raise NmtError(f"could not reach the Hugging Face hub to load dataset {where}: {_first_line(e)}; "
                       f"{LOCAL_HINT}") from e
    except Exception as e:
        raise NmtError(f"cannot load dataset {where} split {split_name!r}: {_first_line(e)}") from e


def _pairs(ds: Dataset, cfg: DataConfig, where: str) -> Dataset:
    """The ("src", "trg") string columns of ``ds``, from those columns or from a "translation" column."""
    from datasets import Value

    src, trg = cfg.src_lang, cfg.trg_lang
    if {"src", "trg"} <= set(ds.column_names):
        ds = ds.select_columns(["src", "trg"])
    elif "translation" in ds.column_names:
        feature = ds.features["translation"]
        languages = list(getattr(feature, "languages", None) or feature)
        if src not in languages or trg not in languages:
            raise NmtError(f"{where}: the translations are in {', '.join(map(str, languages))}, not {src} and {trg} "
                           f"(set data.src_lang and data.trg_lang)")
        ds = ds.select_columns(["translation"]).flatten()
        ds = ds.select_columns([f"translation.{src}", f"translation.{trg}"]).rename_columns(
            {f"translation.{src}": "src", f"translation.{trg}": "trg"})
    else:
        raise NmtError(f"{where}: expected columns src and trg, or translation ({{{src!r}: ..., {trg!r}: ...}}); "
                       f"found {', '.join(ds.column_names)}")
    for column in ("src", "trg"):
        if ds.features[column] != Value("string"):
            raise NmtError(f"{where}: column {column} holds {ds.features[column]}, not strings")
    return ds


def _quiet_progress_bars() -> None:
    """datasets draws progress bars only on a terminal: in a log file they are noise."""
    if not sys.stderr.isatty():
        import datasets

        datasets.disable_progress_bars()


def load_split(cfg: DataConfig, data_dir: Path | None, split: str) -> Dataset:
    """``split`` (train, dev or test) of the corpus ``cfg`` describes, as a memory-mapped ``datasets.Dataset``
    with the string columns "src" and "trg"; ``data_dir`` is what :func:`prepare` returned. A split without
    pairs is an error naming its file."""
    ds = _load_split(cfg, data_dir, split)
    if len(ds) == 0:
        raise NmtError(f"{describe(cfg, data_dir, split)}: no sentence pairs (the {split} split is empty)")
    return ds


def _load_split(cfg: DataConfig, data_dir: Path | None, split: str) -> Dataset:
    from datasets import concatenate_datasets

    _quiet_progress_bars()
    cache = cache_dir(cfg)
    if cfg.hub is not None and cfg.format == "hub":
        return _pairs(_hub_dataset(cfg.hub, split_name(cfg, split), cache), cfg, describe(cfg, data_dir, split))
    assert data_dir is not None
    files = split_files(cfg, data_dir, split)
    if cfg.format == "text":
        src, trg = (_text_dataset(path, cache, column) for path, column in zip(files, ("src", "trg"), strict=True))
        if len(src) != len(trg):
            raise mismatch(files[0], len(src), files[1], len(trg))
        return concatenate_datasets([src, trg], axis=1)
    if not files[0].is_file():
        raise NmtError(f"data file not found: {files[0]}")
    if cfg.format == "tsv":
        return _cached_columns(cache / "tsv" / f"{_signature(files)}.arrow", ["src", "trg"],
                               lambda: _tsv_columns(files[0]))
    src, trg = cfg.src_lang, cfg.trg_lang
    return _cached_columns(cache / "jsonl" / f"{_hash([_signature(files), src, trg])}.arrow", ["src", "trg"],
                           lambda: _jsonl_columns(files[0], src, trg))


def as_lists(ds: Dataset) -> tuple[list[str], list[str]]:
    """The source and target sentences of a (small) split as lists; a missing value becomes ""."""
    columns = ds.select_columns(["src", "trg"]).to_dict()
    return [s or "" for s in columns["src"]], [t or "" for t in columns["trg"]]


def iter_texts(ds: Dataset, column: str, batch_size: int = 10_000) -> Iterator[str]:
    """The sentences of one column, read batch by batch (for training sentencepiece without a list in memory)."""
    for batch in ds.select_columns([column]).iter(batch_size=batch_size):
        yield from (s or "" for s in batch[column])


def _encode_batch(batch: dict[str, list], src_tok: Tokenizer, trg_tok: Tokenizer) -> dict[str, list]:
    src = src_tok.encode([s or "" for s in batch["src"]])
    trg = trg_tok.encode([t or "" for t in batch["trg"]])
    return {"src_ids": src, "trg_ids": trg, "src_len": [len(s) for s in src], "trg_len": [len(t) for t in trg]}


def encode(cfg: DataConfig, split: str, ds: Dataset, src_tok: Tokenizer, trg_tok: Tokenizer) -> Dataset:
    """The subword ids and lengths of a split (columns src_ids, trg_ids, src_len, trg_len), cached in
    ``cache_dir/tokens`` and memory-mapped.

    The cache key is the split's Arrow files (path, size, mtime: they are named after the data files they were
    read from, so changing a data file changes them), the split, the languages and the sentencepiece models'
    bytes. Runs may share the cache: datasets writes a temporary file in the same folder and renames it, so a
    reader never sees half a file; a damaged file (a crash of another kind) is built again. A dataset without
    files (built in memory) is tokenised in memory.
    """
    from datasets import Features, List, Value

    ids, length = List(Value("int32")), Value("int32")
    features = Features({"src_ids": ids, "trg_ids": ids, "src_len": length, "trg_len": length})
    options: dict[str, Any] = {"batched": True, "batch_size": 10_000, "remove_columns": ds.column_names,
                               "features": features, "fn_kwargs": {"src_tok": src_tok, "trg_tok": trg_tok},
                               "desc": f"tokenising {split}"}
    if not ds.cache_files:
        return ds.map(_encode_batch, keep_in_memory=True, **options)
    key = _hash({"files": [_stat(Path(f["filename"])) for f in ds.cache_files], "rows": len(ds),
                 "split": split_name(cfg, split), "languages": [cfg.src_lang, cfg.trg_lang],
                 "tokenizers": [hashlib.sha256(tok.path.read_bytes()).hexdigest() for tok in (src_tok, trg_tok)]})
    out = cache_dir(cfg) / "tokens" / f"{key}.arrow"
    out.parent.mkdir(parents=True, exist_ok=True)
    _quiet_progress_bars()
    _open_cached(out)  # removes a damaged file, which map() would otherwise load
    return ds.map(_encode_batch, cache_file_name=str(out), load_from_cache_file=True, new_fingerprint=key,
                  **options)


def lengths(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The source and target lengths (subwords) of a tokenised split, as numpy arrays."""
    columns = ds.select_columns(["src_len", "trg_len"]).with_format("numpy")[:]
    return columns["src_len"], columns["trg_len"]


def filter_pairs(ds: Dataset, max_length: int, max_ratio: float = 0.0
                 ) -> tuple[Dataset, np.ndarray, np.ndarray, np.ndarray]:
    """Drop tokenised training pairs with an empty side, a side longer than ``max_length`` subwords, or (when
    ``max_ratio`` > 0) a longer side more than ``max_ratio`` times the shorter; returns the kept pairs, their
    source and target lengths, and their rows in ``ds``."""
    src, trg = lengths(ds)
    empty = (src == 0) | (trg == 0)
    long = ~empty & ((src > max_length) | (trg > max_length))
    ratio = np.maximum(src, trg) / np.maximum(np.minimum(src, trg), 1)
    skewed = ~empty & ~long & (ratio > max_ratio) if max_ratio > 0 else np.zeros_like(empty)
    keep = np.flatnonzero(~(empty | long | skewed))
    if len(keep) < len(ds):
        log.info("filtered %d of %d training pairs: %d with an empty side, %d longer than %d subwords, %d with a "
                 "length ratio above %g", len(ds) - len(keep), len(ds), empty.sum(), long.sum(), max_length,
                 skewed.sum(), max_ratio)
        ds = ds.select(keep, keep_in_memory=True)
    return ds, src[keep], trg[keep], keep


class Segmentation:
    """Training pairs segmented anew for one epoch (subword regularisation): ``pairs[indices]`` gives the rows as a
    tokenised split does ({"src_ids": [...], "trg_ids": [...]}), and ``src_lengths``/``trg_lengths`` their lengths."""

    def __init__(self, src_ids: list[list[int]], trg_ids: list[list[int]]) -> None:
        self.src_ids, self.trg_ids = src_ids, trg_ids
        self.src_lengths = np.array([len(x) for x in src_ids])
        self.trg_lengths = np.array([len(x) for x in trg_ids])

    def __len__(self) -> int:
        return len(self.src_ids)

    def __getitem__(self, indices: list[int]) -> dict[str, list[list[int]]]:
        return {"src_ids": [self.src_ids[i] for i in indices], "trg_ids": [self.trg_ids[i] for i in indices]}


def sample_segmentation(texts: Dataset, best: Dataset, src_tok: Tokenizer, trg_tok: Tokenizer, alpha: float,
                        seed: int, max_length: int) -> Segmentation:
    """One sampled segmentation of the training pairs ``texts`` (string columns "src" and "trg"), reproducible from
    ``seed`` (:meth:`Tokenizer.sample`); a side that samples longer than ``max_length`` subwords keeps its best
    segmentation, from the tokenised pairs ``best`` (row for row the same pairs)."""
    src_texts, trg_texts = as_lists(texts)
    src, trg = src_tok.sample(src_texts, alpha, seed), trg_tok.sample(trg_texts, alpha, seed + 1)
    long = [i for i, (s, t) in enumerate(zip(src, trg, strict=True)) if len(s) > max_length or len(t) > max_length]
    if long:
        rows = best[long]
        for k, i in enumerate(long):
            src[i], trg[i] = rows["src_ids"][k], rows["trg_ids"][k]
    return Segmentation(src, trg)
