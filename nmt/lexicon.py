"""A lexical table for vocabulary shortlists (``decode.shortlist``), as Marian and CTranslate2 use to cut the output
projection: built once from a run's training data by co-occurrence, saved in the run (``shortlist.pt``), read at
search time.

For each source subword s, its target subwords t ranked by the Dice coefficient of their co-occurrence in sentence
pairs, 2 c(s, t) / (c(s) + c(t)), with c counting the pairs that hold them; and the target subwords ranked by how
many pairs hold them. A sentence's shortlist with K is: the K best target subwords of each of its source subwords,
the ``frequent`` most frequent target subwords, EOS, and its own subwords where the target vocabulary has them (the
pieces of numbers and names, copied more often than translated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nmt import NmtError
from nmt.tokenizer import BOS, EOS, PAD, UNK, Tokenizer

PER_SOURCE = 100  # target subwords kept per source subword in the table (decode.shortlist takes up to this many)
FREQUENT = 200  # most frequent target subwords in every list


@dataclass
class Lexicon:
    """``table`` [source vocabulary, per_source]: target ids by decreasing Dice (-1: none); ``frequent`` [N]: target
    ids by decreasing count; ``copy`` [source vocabulary]: each source subword's id in the target vocabulary (-1:
    not there)."""

    table: Tensor
    frequent: Tensor
    copy: Tensor

    def candidates(self, src: Tensor, k: int, trg_vocab: int) -> Tensor:
        """[B, trg_vocab] booleans: each sentence's shortlist, ``src`` [B, S] its source ids (PAD ignored)."""
        if not 1 <= k <= self.table.size(1):
            raise NmtError(f"decode.shortlist={k}: this run's table keeps {self.table.size(1)} target subwords per "
                           f"source subword (1 to {self.table.size(1)}; 0: the full vocabulary)")
        src = src.cpu()
        allowed = torch.zeros(src.size(0), trg_vocab, dtype=torch.bool)
        allowed[:, self.frequent] = True
        allowed[:, EOS] = True
        ids = torch.cat([self.table[src][..., :k].flatten(1), self.copy[src]], dim=1)
        pad = src == PAD
        ids = torch.where((ids < 0) | torch.cat([pad.repeat_interleave(k, dim=1), pad], dim=1), EOS, ids)
        return allowed.scatter_(1, ids, True)

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"table": self.table, "frequent": self.frequent, "copy": self.copy}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        """A saved table; reading it runs no code (``weights_only``)."""
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            return cls(saved["table"], saved["frequent"], saved["copy"])
        except (OSError, KeyError, RuntimeError, TypeError) as e:
            raise NmtError(f"{path} is not a shortlist table of nmt ({e.__class__.__name__}): build it again with "
                           f"nmt shortlist") from None


def build_lexicon(src_ids: Sequence[Sequence[int]], trg_ids: Sequence[Sequence[int]], src_tok: Tokenizer,
                  trg_tok: Tokenizer, per_source: int = PER_SOURCE, frequent: int = FREQUENT) -> Lexicon:
    """The table of ``per_source`` target subwords per source subword and the ``frequent`` most frequent target
    subwords, from sentence pairs of subword ids (see the module docstring)."""
    vs, vt = len(src_tok), len(trg_tok)
    keys, src_count, trg_count = [], np.zeros(vs, np.int64), np.zeros(vt, np.int64)
    for s, t in zip(src_ids, trg_ids, strict=True):
        su, tu = np.unique(np.asarray(s, np.int64)), np.unique(np.asarray(t, np.int64))
        src_count[su] += 1
        trg_count[tu] += 1
        keys.append((su[:, None] * vt + tu[None, :]).ravel())
    pairs, together = np.unique(np.concatenate(keys) if keys else np.zeros(0, np.int64), return_counts=True)
    s, t = pairs // vt, pairs % vt
    dice = 2 * together / (src_count[s] + trg_count[t])
    order = np.lexsort((t, -dice, s))  # by source, then best first (ties: the lower id)
    s, t = s[order], t[order]
    starts = np.searchsorted(s, np.arange(vs))
    rank = np.arange(len(s)) - starts[s]
    keep = rank < per_source
    table = np.full((vs, per_source), -1, np.int64)
    table[s[keep], rank[keep]] = t[keep]
    counts = trg_count.copy()
    counts[[PAD, UNK, BOS, EOS]] = -1
    top = np.argsort(-counts, kind="stable")[:frequent]
    pieces = src_tok.pieces(range(vs))
    copy = torch.tensor([i if i != UNK else -1 for i in trg_tok.ids(pieces)])
    copy[[PAD, UNK, BOS, EOS]] = -1
    return Lexicon(torch.from_numpy(table), torch.from_numpy(top[counts[top] > 0]), copy)
