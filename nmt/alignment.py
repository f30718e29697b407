"""Word alignments of given translations by forced decoding, and alignments scored against a gold standard
(alignment error rate, Och & Ney 2003). The links themselves come from attention through ``nmt.words.pharaoh``
(Pharaoh format, "i-j": source word i, target word j, 0-based)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from nmt import NmtError
from nmt.batching import pair_batches
from nmt.textfile import read_lines

if TYPE_CHECKING:
    from nmt.translate import Translator

Links = set[tuple[int, int]]


@dataclass
class Forced:
    """A sentence pair decoded with teacher forcing: its subword pieces and the attention of the model while
    reading the given translation: [target pieces + EOS, source pieces + EOS], or with all heads (Transformer)
    [layers, heads, target pieces + EOS, source pieces + EOS]. None when a side is blank or the model has no
    attention."""

    src_pieces: list[str]
    trg_pieces: list[str]
    attention: Tensor | None


def has_heads(translator: Translator) -> bool:
    """Whether the model keeps per-layer, per-head attention (a Transformer, or an ensemble of Transformers)."""
    return translator.model.has_heads


@torch.no_grad()
def force_decode(translator: Translator, src_ids: list[list[int]], trg_ids: list[list[int]],
                 all_heads: bool = False) -> list[Tensor | None]:
    """Teacher-force each target through the model (``model(src, src_mask, trg_in)``, in length-sorted batches)
    and cut each sentence's attention to its pieces (EOS included, see :class:`Forced`)."""
    if all_heads and not has_heads(translator):
        raise NmtError("per-layer and per-head attention needs a Transformer model")
    model = translator.model
    was_training = model.training
    model.eval()
    results: list[Tensor | None] = [None] * len(src_ids)
    for indices, batch in pair_batches(src_ids, trg_ids, translator.decode.batch_tokens):
        batch = batch.to(translator.device)
        kwargs = {"return_all_attention": True} if all_heads else {}
        _, attention = model(batch.src, batch.src_mask, batch.trg_in, **kwargs)
        if attention is None:
            break
        for b, i in enumerate(indices):
            results[i] = attention[b, ..., : len(trg_ids[i]) + 1, : len(src_ids[i]) + 1].float().cpu()
    model.train(was_training)
    return results


def forced_attention(translator: Translator, sources: list[str], targets: list[str],
                     all_heads: bool = False) -> list[Forced]:
    """The attention of the model reading each given translation of each source sentence (forced decoding).

    Sources longer than the model's limit are truncated, as in translation.
    """
    if len(sources) != len(targets):
        raise ValueError(f"{len(sources)} sources for {len(targets)} targets")
    src_ids = [ids[: translator.max_src_length] for ids in translator.src_tok.encode(sources)]
    trg_ids = translator.trg_tok.encode(targets)
    attention = force_decode(translator, src_ids, trg_ids, all_heads)
    return [Forced(translator.src_tok.pieces(s), translator.trg_tok.pieces(t), a)
            for s, t, a in zip(src_ids, trg_ids, attention, strict=True)]


@dataclass
class AlignmentScores:
    """Precision, recall and alignment error rate (fractions) of predicted links A against sure links S and
    possible links P (S ⊆ P), summed over a corpus, and the counts behind them."""

    precision: float
    recall: float
    aer: float
    sentences: int
    predicted: int
    sure: int
    possible: int


PHARAOH_LINK = re.compile(r"(\d+)([-?])(\d+)")


def parse_pharaoh(line: str, where: str) -> tuple[Links, Links]:
    """One Pharaoh line -> (sure, possible) links; 'i-j' is sure, 'i?j' possible, and possible includes sure.
    ``where`` ('file:line') names a bad line in the error."""
    sure: Links = set()
    possible: Links = set()
    for token in line.split():
        match = PHARAOH_LINK.fullmatch(token)
        if match is None:
            raise NmtError(f"{where}: bad alignment link {token!r} (expected i-j, or i?j for a possible link)")
        link = (int(match[1]), int(match[3]))
        possible.add(link)
        if match[2] == "-":
            sure.add(link)
    return sure, possible


def read_pharaoh(path: Path) -> list[tuple[Links, Links]]:
    """The (sure, possible) links of each line of a Pharaoh file."""
    return [parse_pharaoh(line, f"{path}:{n}") for n, line in enumerate(read_lines(path), 1)]


WPT_LINE = re.compile(r"(\d+)\s+(\d+)\s+(\d+)(?:\s+([SP]))?(?:\s+[0-9.]+)?")


def is_wpt_format(lines: list[str]) -> bool:
    """Whether gold lines are 'SENT I J [S|P]' links (the format of the HLT-NAACL 2003 word alignment shared
    task, in which the Hansards and Europarl gold standards come), not Pharaoh lines."""
    first = next((line.strip() for line in lines if line.strip()), "")
    return "-" not in first and "?" not in first and WPT_LINE.fullmatch(first) is not None


def read_gold(path: Path, sentences: int) -> list[tuple[Links, Links]]:
    """Gold (sure, possible) links of ``sentences`` sentences, in either format:

    - Pharaoh: a line per sentence, 'i-j' sure and 'i?j' possible links, 0-based (one line per sentence, so
      the file must have ``sentences`` lines);
    - 'SENT I J [S|P] [CONFIDENCE]': a link per line, SENT the 1-based line of the sentence in the predictions,
      I (source) and J (target) 1-based word positions, S sure (the default) or P possible; position 0 (a link
      to NULL) is ignored.
    """
    lines = read_lines(path)
    if not is_wpt_format(lines):
        gold = [parse_pharaoh(line, f"{path}:{n}") for n, line in enumerate(lines, 1)]
        if len(gold) != sentences:
            raise NmtError(f"{path} has {len(gold)} lines for {sentences} predicted sentences")
        return gold
    gold = [(set(), set()) for _ in range(sentences)]
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        match = WPT_LINE.fullmatch(line.strip())
        if match is None:
            raise NmtError(f"{path}:{n}: bad gold link {line.strip()!r} (expected 'SENT I J S' or 'SENT I J P')")
        sent, i, j = int(match[1]), int(match[2]), int(match[3])
        if not 1 <= sent <= sentences:
            raise NmtError(f"{path}:{n}: sentence {sent} out of range: the predictions have {sentences} lines")
        if i == 0 or j == 0:
            continue
        sure, possible = gold[sent - 1]
        possible.add((i - 1, j - 1))
        if match[4] != "P":
            sure.add((i - 1, j - 1))
    return gold


def score_alignments(gold: list[tuple[Links, Links]], predicted: list[Links]) -> AlignmentScores:
    """precision = |A∩P| / |A|, recall = |A∩S| / |S|, AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|) over the corpus
    (Och & Ney 2003); sure links count as possible. Empty denominators give 0."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences for {len(predicted)} predicted")
    a = s = p = a_s = a_p = 0
    for (sure, possible), links in zip(gold, predicted, strict=True):
        possible = possible | sure
        a, s, p = a + len(links), s + len(sure), p + len(possible)
        a_s, a_p = a_s + len(links & sure), a_p + len(links & possible)
    return AlignmentScores(precision=a_p / a if a else 0.0, recall=a_s / s if s else 0.0,
                           aer=1.0 - (a_s + a_p) / (a + s) if a + s else 0.0, sentences=len(gold), predicted=a,
                           sure=s, possible=p)
