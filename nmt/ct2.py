"""Translation by CTranslate2 with a Transformer that ``nmt export --format ctranslate2`` wrote: the engine behind
``nmt translate --engine ctranslate2``, with the interface of :class:`nmt.translate.Translator`.

The same batches as ours (sorted by length, ``decode.batch_tokens`` source subwords each) go to CTranslate2's
``translate_batch``. At alpha 0 both engines write the same translations up to a close call (docs/translating.md
has the measurement). What differs:
- the length penalty: CTranslate2 divides a hypothesis's log-probability by length^alpha (GNMT's ((5 + |y|) / 6)^alpha
  in nmt), so the two agree only at alpha 0;
- the length limit: one per batch (a * its longest source + b), not one per sentence;
- sampling, shortlists, ``--compile`` and ensembles are nmt's own (refused in one line); per-token scores are
  left empty.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nmt import NmtError
from nmt.batching import token_batches
from nmt.config import DecodeConfig
from nmt.decode_settings import check_decode, with_changes
from nmt.export import EXPORT_FOLDER, SETTINGS, ctranslate2_module
from nmt.hardware import Precision
from nmt.rundir import RunDir
from nmt.tokenizer import EOS, Tokenizer
from nmt.translate import Translation, source_ids
from nmt.words import pharaoh

COMPUTE_TYPES = {(None, "fp32"): "float32", (None, "auto"): "float32", (None, "bf16"): "bfloat16",
                 ("int8", "fp32"): "int8_float32", ("int8", "auto"): "int8_float32", ("int8", "bf16"): "int8_bfloat16"}


def export_folder(path: str | Path) -> Path:
    """The exported model of ``path``: the folder itself when it holds one, else ``path/ctranslate2``; neither is
    one line naming the export command."""
    path = Path(path)
    for folder in (path, path / EXPORT_FOLDER):
        if (folder / "model.bin").is_file() and (folder / SETTINGS).is_file():
            return folder
    if RunDir(path).holds_run():
        raise NmtError(f"{path} has no CTranslate2 model: write it with 'nmt export --format ctranslate2 -m {path}'")
    raise NmtError(f"{path}: neither a CTranslate2 model written by nmt export nor a run holding one")


class CTranslate2Translator:
    """An exported Transformer translating detokenized sentences through CTranslate2 (see the module docstring)."""

    def __init__(self, folder: str | Path, decode: DecodeConfig, max_src_length: int, quantize: str | None = None,
                 precision: str = "fp32", device: torch.device | str = "cpu", threads: int = 0,
                 attention: bool = False, checkpoint_name: str = "") -> None:
        self.folder, self.decode, self.max_src_length = Path(folder), decode, max_src_length
        self.checkpoint_name = checkpoint_name  # the run's checkpoint the export was written from
        self.src_tok = Tokenizer(self.folder / "source.model")
        self.trg_tok = Tokenizer(self.folder / "target.model")
        self.attention = attention  # return attention (for alignments): slower
        self.end_piece = self.trg_tok.pieces([EOS])[0]
        self.device = torch.device(device)
        compute_type = COMPUTE_TYPES[(quantize, precision)]
        self.precision = Precision(compute_type, "CTranslate2's compute type")
        ct2 = ctranslate2_module()
        self.engine = ct2.Translator(str(self.folder), device=self.device.type, compute_type=compute_type,
                                     intra_threads=threads or torch.get_num_threads())
        self.checkpoint_path = self.folder

    @classmethod
    def load(cls, path: str | Path, quantize: str | None = None, precision: str = "fp32",
             device: torch.device | str = "cpu", threads: int = 0, attention: bool = False,
             **decode: object) -> CTranslate2Translator:
        """The model of ``path`` (an export, or a run holding one in ``ctranslate2/``) with its run's decoding
        settings, ``decode`` overriding them (None keeps the run's). What CTranslate2 cannot do is one line."""
        folder = export_folder(path)
        check_decode(decode)
        settings = json.loads((folder / SETTINGS).read_text(encoding="utf-8"))
        chosen = with_changes(DecodeConfig.model_validate(settings["decode"]), decode)
        if chosen.sample:
            raise NmtError("--engine ctranslate2 does not sample the way nmt does (a generator per line and "
                           "sample): use nmt's own engine for --sample")
        if chosen.shortlist:
            raise NmtError("--engine ctranslate2 has no shortlist of nmt's: use nmt's own engine for --shortlist")
        if chosen.compile:
            raise NmtError("--engine ctranslate2 runs its own kernels: --compile is for nmt's own engine")
        return cls(folder, chosen, settings["max_length"], quantize, precision, device, threads, attention,
                   settings["checkpoint"])

    def translate(self, sentences: list[str], names: list[str] | None = None,
                  lines: Sequence[int] | None = None) -> list[Translation]:
        """Translate detokenized sentences (``lines`` is accepted for the interface: CTranslate2 does not sample
        here); over-long ones are truncated with a warning naming them, as nmt's own engine does."""
        d = self.decode
        src_ids = source_ids(self.src_tok, sentences, self.max_src_length, names)
        results: list[Translation | None] = [None] * len(src_ids)
        for indices in token_batches([len(s) for s in src_ids], None, d.batch_tokens):
            batch = [self.src_tok.pieces(src_ids[i]) for i in indices]
            longest = max(len(p) for p in batch) + 1  # EOS
            limit = max(1, int(d.max_len_a * longest + d.max_len_b))
            out = self.engine.translate_batch(
                batch, beam_size=d.beam_size, num_hypotheses=d.nbest, length_penalty=d.alpha,
                min_decoding_length=d.min_length, no_repeat_ngram_size=d.no_repeat_ngram,
                max_decoding_length=limit - 1, return_scores=True, return_attention=self.attention,
                return_end_token=self.attention)  # the EOS step's attention row, as nmt's attention has
            for i, pieces, result in zip(indices, batch, out, strict=True):
                results[i] = self._translation(pieces, result)
        return [r for r in results if r is not None]

    def _translation(self, src_pieces: list[str], result: Any) -> Translation:
        pieces = [h[:-1] if h[-1:] == [self.end_piece] else list(h) for h in result.hypotheses]
        texts = self.trg_tok.decode([self.trg_tok.ids(h) for h in pieces])
        trg_pieces = pieces[0]
        attention = self._attention(result.attention[0]) if self.attention else None
        alignment = (pharaoh(attention, src_pieces, trg_pieces)
                     if attention is not None and attention.numel() else "")
        return Translation(texts[0], result.scores[0], [], src_pieces, trg_pieces, attention, alignment,
                           list(zip(texts, result.scores, strict=True)))

    @staticmethod
    def _attention(rows: list[list[float]]) -> torch.Tensor:
        """CTranslate2's attention [target pieces + EOS, source pieces] as nmt's [target pieces + EOS, source
        pieces + EOS]: it leaves out the source EOS column, whose weight is the rest of each row's (a mean of
        softmaxes sums to 1)."""
        attention = torch.tensor(rows)
        if not attention.numel():
            return attention
        return torch.cat([attention, (1 - attention.sum(1, keepdim=True)).clamp(min=0)], dim=1)
