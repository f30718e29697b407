"""Subword pieces and the words they make: which word each sentencepiece piece belongs to, attention merged
from pieces into words, and the word alignment that attention implies (Pharaoh format, "i-j": source word i,
target word j, 0-based). Translation, alignment, plotting and the server all read pieces through these."""

from __future__ import annotations

import torch
from torch import Tensor

WORD_START = "\u2581"  # sentencepiece's word-start marker

def word_ids(pieces: list[str]) -> list[int]:
    """The word each subword piece belongs to: a piece starting with '▁' starts a new word."""
    ids, word = [], -1
    for i, piece in enumerate(pieces):
        if i == 0 or piece.startswith(WORD_START):
            word += 1
        ids.append(word)
    return ids


def words(pieces: list[str]) -> list[str]:
    """The detokenized words of subword pieces: ['▁Hund', 'e', '▁.'] -> ['Hunde', '.']."""
    out: list[str] = []
    for word, piece in zip(word_ids(pieces), pieces, strict=True):
        if word == len(out):
            out.append("")
        out[word] += piece.replace(WORD_START, "")
    return out


def word_attention(attention: Tensor, src_pieces: list[str], trg_pieces: list[str]) -> Tensor:
    """Merge subword attention [target pieces, source pieces] into words: sum over source pieces,
    average over target pieces. Extra rows/columns (the EOS step and the source EOS) are dropped."""
    attention = attention[: len(trg_pieces), : len(src_pieces)].float()
    src_w = torch.tensor(word_ids(src_pieces))
    trg_w = torch.tensor(word_ids(trg_pieces))
    n_src, n_trg = int(src_w.max()) + 1, int(trg_w.max()) + 1
    by_src = torch.zeros(attention.size(0), n_src).index_add_(1, src_w, attention)
    summed = torch.zeros(n_trg, n_src).index_add_(0, trg_w, by_src)
    return summed / torch.bincount(trg_w, minlength=n_trg).unsqueeze(1)


def pharaoh(attention: Tensor | None, src_pieces: list[str], trg_pieces: list[str]) -> str:
    """Each target word linked to the source word it attends to most, as 'i-j' pairs sorted by i."""
    if attention is None or not src_pieces or not trg_pieces:
        return ""
    best = word_attention(attention, src_pieces, trg_pieces).argmax(1).tolist()
    return " ".join(f"{i}-{j}" for i, j in sorted((i, j) for j, i in enumerate(best)))
