"""Reading corpora through `datasets`: every format gives the right pairs, tokenisation is cached and invalidated,
training pairs are filtered, and bad input names the file and line."""

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest

from nmt import NmtError, data
from nmt.config import DataConfig
from nmt.data import encode, filter_pairs, load_split, prepare, split_files
from nmt.tokenizer import Tokenizer, train_sentencepiece
from tests.conftest import MULTI30K, needs_multi30k, run_config

PAIRS = [("ein Hund läuft", "a dog runs"), ("zwei Katzen", "two cats"), ("Guten Morgen!", "good morning!")]
DEV = [("ja", "yes")]


def config(tmp_path: Path, fmt: str = "text", **extra: object) -> DataConfig:
    return DataConfig.model_validate({"name": "test", "format": fmt, "dir": str(tmp_path), "src_lang": "de",
                                      "trg_lang": "en", "splits": {"train": "train", "dev": "val"},
                                      "cache_dir": str(tmp_path / "cache"), "max_length": 100, **extra})


def write_text(directory: Path, split: str, pairs: list[tuple[str, str]]) -> None:
    (directory / f"{split}.de").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (directory / f"{split}.en").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")


def pairs_of(ds: datasets.Dataset) -> list[tuple[str, str]]:
    assert isinstance(ds, datasets.Dataset) and ds.column_names == ["src", "trg"]
    return list(zip(*data.as_lists(ds), strict=True))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    texts = [s for pair in PAIRS * 20 for s in pair]
    return train_sentencepiece(texts, tmp_path_factory.mktemp("spm") / "spm.model", vocab_size=60)


def test_a_missing_data_directory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(NmtError, match="data directory not found"):
        prepare(config(tmp_path / "nope"), tmp_path)


def test_split_files_follow_the_config(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert split_files(cfg, tmp_path, "dev") == (tmp_path / "val.de", tmp_path / "val.en")
    assert split_files(config(tmp_path, "tsv"), tmp_path, "dev") == (tmp_path / "val.tsv",)


# --- formats --------------------------------------------------------------------------------------------------

def test_text_format(tmp_path: Path) -> None:
    write_text(tmp_path, "train", PAIRS)
    write_text(tmp_path, "val", DEV)
    cfg = config(tmp_path)
    assert pairs_of(load_split(cfg, prepare(cfg, tmp_path), "train")) == PAIRS
    assert pairs_of(load_split(cfg, tmp_path, "dev")) == DEV
    swapped = config(tmp_path, src_lang="en", trg_lang="de")
    assert pairs_of(load_split(swapped, tmp_path, "dev")) == [("yes", "ja")]


def test_text_format_errors_name_file_line_and_counts(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    write_text(tmp_path, "train", PAIRS)
    (tmp_path / "train.en").write_text("a dog runs\ntwo cats\n", encoding="utf-8")
    with pytest.raises(NmtError, match=r"train\.de has 3 lines, .*train\.en has 2"):
        load_split(cfg, tmp_path, "train")
    (tmp_path / "train.en").write_bytes(b"a dog runs\ntwo \xff cats\ngood morning\n")
    with pytest.raises(NmtError, match=r"train\.en:2: invalid UTF-8"):
        load_split(cfg, tmp_path, "train")
    with pytest.raises(NmtError, match=r"data file not found: .*val\.de"):
        load_split(cfg, tmp_path, "dev")


def test_tsv_format(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("".join(f"{s}\t{t}\r\n" for s, t in PAIRS), encoding="utf-8")
    cfg = config(tmp_path, "tsv")
    assert pairs_of(load_split(cfg, tmp_path, "train")) == PAIRS
    (tmp_path / "val.tsv").write_text("ja\tyes\nnein no\n", encoding="utf-8")
    with pytest.raises(NmtError, match=r"val\.tsv:2: expected 2 tab-separated columns .*found 1"):
        load_split(cfg, tmp_path, "dev")


def test_jsonl_format_with_src_trg_keys_or_translations(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"src": s, "trg": t, "id": i}) + "\n"
                                                  for i, (s, t) in enumerate(PAIRS)), encoding="utf-8")
    (tmp_path / "val.jsonl").write_text("".join(json.dumps({"translation": {"de": s, "en": t, "fr": "oui"}}) + "\n"
                                                for s, t in DEV), encoding="utf-8")
    cfg = config(tmp_path, "jsonl")
    assert pairs_of(load_split(cfg, tmp_path, "train")) == PAIRS
    assert pairs_of(load_split(cfg, tmp_path, "dev")) == DEV
    assert pairs_of(load_split(config(tmp_path, "jsonl", src_lang="fr"), tmp_path, "dev")) == [("oui", "yes")]
    with pytest.raises(NmtError, match=r"val\.jsonl: the translations are in de, en, fr, not cs and en"):
        load_split(config(tmp_path, "jsonl", src_lang="cs"), tmp_path, "dev")


def write_hub_layout(directory: Path, pairs: list[tuple[str, str]]) -> None:
    """A dataset as the hub keeps opus_books: a de-en config in translation format, declared in README.md."""
    (directory / "de-en").mkdir(parents=True)
    (directory / "README.md").write_text("---\nconfigs:\n- config_name: de-en\n  data_files:\n  - split: train\n"
                                         "    path: de-en/train.jsonl\n---\n", encoding="utf-8")
    (directory / "de-en" / "train.jsonl").write_text(
        "".join(json.dumps({"id": str(i), "translation": {"de": s, "en": t}}) + "\n" for i, (s, t) in enumerate(pairs)),
        encoding="utf-8")


def test_hub_format_with_a_local_dataset_in_the_hubs_layout(tmp_path: Path) -> None:
    write_hub_layout(tmp_path / "opus_books", PAIRS)
    cfg = config(tmp_path, "hub", hub={"name": str(tmp_path / "opus_books"), "config": "de-en"},
                 splits={"train": "train[:-1]", "dev": "train[-1:]", "test": "validation"})
    assert prepare(cfg, tmp_path) is None
    assert pairs_of(load_split(cfg, None, "train")) == PAIRS[:-1]
    assert pairs_of(load_split(cfg, None, "dev")) == PAIRS[-1:]
    with pytest.raises(NmtError, match=r"opus_books' \(de-en\) split 'validation': .*Unknown split"):
        load_split(cfg, None, "test")
    write_hub_layout(tmp_path / "changed", [*PAIRS, ("neu", "new")])  # a changed directory is read again
    (tmp_path / "changed" / "de-en" / "train.jsonl").replace(tmp_path / "opus_books" / "de-en" / "train.jsonl")
    assert pairs_of(load_split(cfg, None, "dev")) == [("neu", "new")]


def assert_offline_error(e: pytest.ExceptionInfo, name: str) -> None:
    message = str(e.value)
    assert "\n" not in message
    assert "could not reach the Hugging Face hub" in message and repr(name) in message
    assert "data.format=text|tsv|jsonl data.dir=" in message


def test_an_unreachable_hub_fails_fast_on_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    cfg = config(tmp_path, "hub", hub={"name": "opus_books", "config": "de-en"})
    start = time.perf_counter()
    with pytest.raises(NmtError) as e:
        load_split(cfg, None, "train")
    assert time.perf_counter() - start < 5
    assert_offline_error(e, "opus_books")
    assert "127.0.0.1:9" in str(e.value)


def test_without_network_the_hub_fails_fast(tmp_path: Path) -> None:
    if datasets.config.HF_HUB_OFFLINE or data._unreachable(datasets.config.HF_ENDPOINT) is None:
        pytest.skip("the hub is reachable (or HF_HUB_OFFLINE is set)")
    start = time.perf_counter()
    with pytest.raises(NmtError) as e:
        load_split(config(tmp_path, "hub", hub={"name": "opus_books", "config": "de-en"}), None, "train")
    assert time.perf_counter() - start < 5
    assert_offline_error(e, "opus_books")


def test_hf_hub_offline_fails_fast_on_one_line(tmp_path: Path) -> None:
    code = ("from nmt import NmtError\nfrom nmt.config import DataConfig\nfrom nmt.data import load_split\n"
            f"cfg = DataConfig(name='test', format='hub', hub={{'name': 'opus_books', 'config': 'de-en'}}, "
            f"src_lang='de', trg_lang='en', splits={{'train': 'train', 'dev': 'dev'}}, cache_dir={str(tmp_path)!r}, "
            "max_length=100)\n"
            "try:\n    load_split(cfg, None, 'train')\nexcept NmtError as e:\n    print(e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert time.perf_counter() - start < 20  # mostly the imports
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and "could not reach the Hugging Face hub" in lines[0], out.stdout + out.stderr
    assert "'opus_books'" in lines[0] and "data.format=text|tsv|jsonl data.dir=" in lines[0]


@needs_multi30k
@pytest.mark.parametrize(("option", "source", "target"), [("multi30k_deen", "de", "en"), ("multi30k_fren", "fr", "en"),
                                                          ("multi30k_ende", "en", "de")])
def test_multi30k_configs_read_the_real_corpus(option: str, source: str, target: str, tmp_path: Path) -> None:
    assert MULTI30K is not None
    cfg = run_config([f"data={option}", f"data.dir={MULTI30K}", f"data.cache_dir={tmp_path}"]).data
    dev = load_split(cfg, prepare(cfg, tmp_path), "dev")
    assert len(dev) == 1014
    first = [(MULTI30K / f"val.{lang}").open(encoding="utf-8").readline().rstrip("\n") for lang in (source, target)]
    assert data.as_lists(dev.select([0])) == ([first[0]], [first[1]])


# --- tokenisation cache ---------------------------------------------------------------------------------------

def counting_encoder(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = data._encode_batch

    def counted(*args: object, **kwargs: object) -> dict:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(data, "_encode_batch", counted)
    return calls


def test_tokenised_splits_are_cached_and_invalidated(tmp_path: Path, tokenizer: Tokenizer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_encoder(monkeypatch)
    write_text(tmp_path, "train", PAIRS)
    cfg = config(tmp_path)
    first = encode(cfg, "train", load_split(cfg, tmp_path, "train"), tokenizer, tokenizer)
    assert calls == [1]
    assert first.column_names == ["src_ids", "trg_ids", "src_len", "trg_len"]
    assert first[0]["src_ids"] == tokenizer.encode([PAIRS[0][0]])[0]
    assert first["src_len"][:] == [len(ids) for ids in tokenizer.encode([s for s, _ in PAIRS])]
    (cache_file,) = (Path(f["filename"]) for f in first.cache_files)
    assert cache_file.parent == tmp_path / "cache" / "tokens"
    mtime = cache_file.stat().st_mtime_ns

    again = encode(cfg, "train", load_split(cfg, tmp_path, "train"), tokenizer, tokenizer)
    assert calls == [1] and again.cache_files == first.cache_files
    assert cache_file.stat().st_mtime_ns == mtime and again[:] == first[:]

    swapped = config(tmp_path, src_lang="en", trg_lang="de")  # same files, other direction
    encode(swapped, "train", load_split(swapped, tmp_path, "train"), tokenizer, tokenizer)
    assert calls == [2]

    other = train_sentencepiece([s for pair in PAIRS * 20 for s in pair], tmp_path / "other.model", vocab_size=40)
    retokenised = encode(cfg, "train", load_split(cfg, tmp_path, "train"), other, other)
    assert calls == [3] and retokenised.cache_files != first.cache_files

    write_text(tmp_path, "train", [*PAIRS, ("neu", "new")])
    changed = encode(cfg, "train", load_split(cfg, tmp_path, "train"), tokenizer, tokenizer)
    assert calls == [4] and len(changed) == 4


def test_a_dataset_in_memory_is_tokenised_in_memory(tokenizer: Tokenizer) -> None:
    ds = datasets.Dataset.from_dict({"src": [s for s, _ in PAIRS], "trg": [t for _, t in PAIRS]})
    cfg = config(Path("nowhere"))
    encoded = encode(cfg, "train", ds, tokenizer, tokenizer)
    assert encoded.cache_files == [] and encoded["trg_ids"][:] == tokenizer.encode([t for _, t in PAIRS])


def test_sentences_stream_in_batches(tmp_path: Path) -> None:
    write_text(tmp_path, "train", PAIRS)
    cfg = config(tmp_path)
    ds = load_split(cfg, tmp_path, "train")
    assert list(data.iter_texts(ds, "trg", batch_size=2)) == [t for _, t in PAIRS]


# --- filtering ------------------------------------------------------------------------------------------------

def test_filter_by_length_and_ratio(caplog: pytest.LogCaptureFixture) -> None:
    src_len, trg_len = [0, 5, 200, 2, 3, 4], [3, 5, 10, 9, 3, 12]
    ds = datasets.Dataset.from_dict({"src_ids": [list(range(n)) for n in src_len],
                                     "trg_ids": [list(range(n)) for n in trg_len],
                                     "src_len": src_len, "trg_len": trg_len})
    with caplog.at_level(logging.INFO, logger="nmt.data"):
        kept, src, trg, _ = filter_pairs(ds, max_length=100, max_ratio=3.0)
    assert kept["src_len"][:] == [5, 3, 4] and src.tolist() == [5, 3, 4] and trg.tolist() == [5, 3, 12]
    assert kept[[0, 2]]["trg_ids"] == [list(range(5)), list(range(12))]
    assert ("filtered 3 of 6 training pairs: 1 with an empty side, 1 longer than 100 subwords, "
            "1 with a length ratio above 3") in caplog.text
    kept, src, _, _ = filter_pairs(ds, max_length=100, max_ratio=0)
    assert src.tolist() == [5, 2, 3, 4] and len(kept) == 4
    kept, src, _, _ = filter_pairs(ds.select([1, 4]), max_length=100)
    assert len(kept) == 2 and isinstance(src, np.ndarray)
