"""From token ids to padded tensors: batches built by token count from sentences of similar length."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nmt.tokenizer import BOS, EOS, PAD


@dataclass
class Batch:
    """Padded source (with EOS) and, for training, target input (BOS y) and output (y EOS)."""

    src: Tensor
    src_mask: Tensor
    trg_in: Tensor | None = None
    trg_out: Tensor | None = None

    @property
    def n_target_tokens(self) -> int:
        return int((self.trg_out != PAD).sum()) if self.trg_out is not None else 0

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(None if t is None else t.to(device) for t in
                       (self.src, self.src_mask, self.trg_in, self.trg_out)))


def pad(seqs: Sequence[Sequence[int]], value: int = PAD) -> Tensor:
    """Right-pad integer sequences into a [B, max_len] tensor."""
    out = torch.full((len(seqs), max(map(len, seqs))), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def make_batch(src: Sequence[Sequence[int]], trg: Sequence[Sequence[int]] | None = None) -> Batch:
    """Source ids get EOS appended (so no source is empty); targets become (BOS y, y EOS)."""
    src_t = pad([[*s, EOS] for s in src])
    if trg is None:
        return Batch(src_t, src_t != PAD)
    return Batch(src_t, src_t != PAD, pad([[BOS, *t] for t in trg]), pad([[*t, EOS] for t in trg]))


def pair_batches(src_ids: Sequence[Sequence[int]], trg_ids: Sequence[Sequence[int]], max_tokens: int
                 ) -> Iterator[tuple[list[int], Batch]]:
    """Sentence pairs for teacher forcing (alignment, scoring), in length-sorted batches of at most ``max_tokens``
    padded tokens: (the pairs' indices, their batch); pairs with a blank side are left out."""
    keep = [i for i, (s, t) in enumerate(zip(src_ids, trg_ids, strict=True)) if s and t]
    for positions in token_batches([len(src_ids[i]) for i in keep], [len(trg_ids[i]) for i in keep], max_tokens):
        indices = [keep[p] for p in positions]
        yield indices, make_batch([src_ids[i] for i in indices], [trg_ids[i] for i in indices])


def token_batches(src_lengths: Sequence[int], trg_lengths: Sequence[int] | None, max_tokens: int,
                  shuffle: bool = False, seed: int = 0) -> list[list[int]]:
    """Group sentence indices into batches of at most ``max_tokens`` padded tokens.

    Sentences are sorted by length so that a batch holds similar lengths (little padding); a batch's size is
    its longest side (+1 for EOS/BOS) times its sentences. With ``shuffle``, ties are broken at random and the
    batch order is shuffled, both from ``seed`` (so a run is reproducible epoch by epoch).
    """
    src = np.asarray(src_lengths) + 1
    longest = np.maximum(src, np.asarray(trg_lengths) + 1) if trg_lengths is not None else src
    rng = np.random.default_rng(seed)
    tiebreak = rng.random(len(longest)) if shuffle else np.arange(len(longest))
    order = np.lexsort((tiebreak, longest))
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order.tolist():
        w = max(width, int(longest[i]))
        if current and w * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, w = [], int(longest[i])
        current.append(i)
        width = w
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches
