"""Subword segmentation with sentencepiece: trained on the training data, saved in the run directory.

Every model shares the same special ids: ``PAD`` 0, ``UNK`` 1, ``BOS`` 2, ``EOS`` 3, so token ids index the
embedding tables directly.
"""

from __future__ import annotations

import io
import itertools
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import sentencepiece as spm

from nmt import NmtError

if TYPE_CHECKING:
    from nmt.config import TokenizerConfig

log = logging.getLogger(__name__)

PAD, UNK, BOS, EOS = 0, 1, 2, 3


class Tokenizer:
    """A sentencepiece model: text <-> ids and pieces. A missing file raises ``FileNotFoundError``; an empty,
    damaged or foreign one is an ``NmtError`` line naming it."""

    def __init__(self, model_file: str | Path) -> None:
        path = Path(model_file)
        if not path.is_file():
            raise FileNotFoundError(f"sentencepiece model not found: {path}")
        self.path = path
        if path.stat().st_size == 0:
            raise NmtError(f"sentencepiece model {path} is empty (0 bytes)")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as e:
            reason = str(e).strip().removeprefix("INTERNAL: ").replace(f" from {path}", "") or type(e).__name__
            raise NmtError(f"sentencepiece model {path} is damaged ({reason})") from None
        if (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id()) != (PAD, UNK, BOS, EOS):
            raise NmtError(f"sentencepiece model {path}: special ids must be pad=0 unk=1 bos=2 eos=3 "
                           f"(train it with nmt)")

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Segment detokenized sentences into subword ids (no BOS/EOS)."""
        return self.sp.encode(list(texts))

    def sample(self, texts: Sequence[str], alpha: float, seed: int) -> list[list[int]]:
        """Subword regularisation: one segmentation sampled per sentence, reproducibly from ``seed``. For a BPE
        model this is BPE-dropout (each merge skipped with probability ``alpha``: Provilkov et al. 2020), for a
        unigram model sampling from all segmentations with smoothing ``alpha`` (Kudo 2018)."""
        spm.set_random_generator_seed(seed)
        return self.sp.encode(list(texts), enable_sampling=True, alpha=alpha, nbest_size=-1, num_threads=1)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Join subword ids back into detokenized sentences."""
        return self.sp.decode([list(x) for x in ids])

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """The subword pieces of ``ids``, e.g. for the labels of an attention plot."""
        return [self.sp.id_to_piece(int(i)) for i in ids]

    def ids(self, pieces: Sequence[str]) -> list[int]:
        """The ids of subword ``pieces`` (the inverse of :meth:`pieces`; an unknown piece is ``UNK``)."""
        return [self.sp.piece_to_id(p) for p in pieces]


def train_sentencepiece(texts: Iterable[str], model_file: Path, vocab_size: int, model_type: str = "bpe",
                        character_coverage: float = 1.0, split_digits: bool = True,
                        max_sentences: int = 1_000_000) -> Tokenizer:
    """Train a sentencepiece model on ``texts``; write it to ``model_file`` and its pieces beside it (.vocab).

    ``vocab_size`` is an upper bound: a small corpus (such as the date task) gets the vocabulary it supports.
    ``model_type`` "char" gives one symbol per character, spaces included (as "▁"), with no normalisation and the
    bytes of characters the training data lacks as fallback symbols: any line round-trips exactly.
    """
    model_file.parent.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    characters = ({"normalization_rule_name": "identity", "add_dummy_prefix": False,
                   "remove_extra_whitespaces": False, "byte_fallback": True} if model_type == "char" else {})
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type=model_type,
            character_coverage=character_coverage, split_digits=split_digits, hard_vocab_limit=False,
            pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, input_sentence_size=max_sentences,
            shuffle_input_sentence=True, minloglevel=2, **characters,
        )
    except RuntimeError as e:
        if model_type == "char" and "vocab_size" in str(e):
            raise NmtError(f"tokenizer.vocab_size={vocab_size} is too small for characters: the 256 byte symbols, 4 "
                           f"special ones and every character of the training data must fit") from None
        raise
    model_file.write_bytes(model.getvalue())
    tokenizer = Tokenizer(model_file)
    with open(model_file.with_suffix(".vocab"), "w", encoding="utf-8") as f:
        for i in range(len(tokenizer)):
            f.write(f"{tokenizer.sp.id_to_piece(i)}\t{tokenizer.sp.get_score(i)}\n")
    log.info("trained sentencepiece %s: %d pieces -> %s", model_type, len(tokenizer), model_file)
    return tokenizer


def tokenizer_files(run_dir: Path, joint: bool) -> tuple[Path, Path]:
    """Where a run keeps its source and target sentencepiece models (one file when the vocabulary is joint)."""
    if joint:
        return run_dir / "spm.joint.model", run_dir / "spm.joint.model"
    return run_dir / "spm.src.model", run_dir / "spm.trg.model"


def load_tokenizers(run_dir: Path, joint: bool) -> tuple[Tokenizer, Tokenizer]:
    """The source and target tokenizers of a run (the same object when joint); a missing one is an ``NmtError``."""
    src_file, trg_file = tokenizer_files(run_dir, joint)
    for path in (src_file, trg_file):
        if not path.is_file():
            raise NmtError(f"sentencepiece model not found: {path} (is {run_dir} a complete training run?)")
    src = Tokenizer(src_file)
    return src, (src if joint else Tokenizer(trg_file))


def build_tokenizers(cfg: TokenizerConfig, run_dir: Path, src_texts: Iterable[str],
                     trg_texts: Iterable[str]) -> tuple[Tokenizer, Tokenizer]:
    """Train the run's sentencepiece model(s) on the training data (read once, as it streams), or load them if the
    run has them."""
    src_file, trg_file = tokenizer_files(run_dir, cfg.joint)
    if src_file.exists() and trg_file.exists():
        return load_tokenizers(run_dir, cfg.joint)
    options = {"vocab_size": cfg.vocab_size, "model_type": cfg.type, "character_coverage": cfg.character_coverage,
               "split_digits": cfg.split_digits}
    if cfg.joint:
        tok = train_sentencepiece(itertools.chain(src_texts, trg_texts), src_file, **options)
        return tok, tok
    return (train_sentencepiece(src_texts, src_file, **options),
            train_sentencepiece(trg_texts, trg_file, **options))
