"""Sentencepiece training and loading with the package's special ids."""

from pathlib import Path

import pytest

from nmt.config import TokenizerConfig
from nmt.tokenizer import BOS, EOS, PAD, UNK, Tokenizer, build_tokenizers, load_tokenizers, train_sentencepiece

TEXTS = [f"the {w} sat on the {v} mat number {n}" for n in range(40) for w, v in
         (("cat", "red"), ("dog", "blue"), ("bird", "green"))]


def test_train_encode_decode_round_trip(tmp_path: Path) -> None:
    tok = train_sentencepiece(TEXTS, tmp_path / "spm.model", vocab_size=60, split_digits=True)
    assert (tmp_path / "spm.model").is_file() and (tmp_path / "spm.vocab").is_file()
    assert (tok.sp.pad_id(), tok.sp.unk_id(), tok.sp.bos_id(), tok.sp.eos_id()) == (PAD, UNK, BOS, EOS)
    ids = tok.encode(["the cat sat on the blue mat number 17"])
    assert tok.decode(ids) == ["the cat sat on the blue mat number 17"]
    assert "1" in tok.pieces(ids[0]) and "7" in tok.pieces(ids[0])  # digits are split
    assert min(ids[0]) > EOS


def test_joint_and_separate_vocabularies(tmp_path: Path) -> None:
    cfg = TokenizerConfig(type="unigram", vocab_size=50, joint=False, character_coverage=1.0, split_digits=False)
    src, trg = build_tokenizers(cfg, tmp_path / "sep", TEXTS, [t.upper() for t in TEXTS])
    assert src is not trg and "▁CAT" not in src.pieces(range(len(src)))
    cfg = cfg.model_copy(update={"joint": True})
    src, trg = build_tokenizers(cfg, tmp_path / "joint", TEXTS, [t.upper() for t in TEXTS])
    assert src is trg
    loaded, _ = load_tokenizers(tmp_path / "joint", joint=True)
    assert loaded.encode(["the CAT"]) == src.encode(["the CAT"])


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"spm\.model"):
        Tokenizer(tmp_path / "spm.model")
