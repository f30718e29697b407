"""Encoder-decoder translation models behind one interface.

Every model offers:
- ``encode(src, src_mask)``: run the encoder once per sentence; returns a dict of batch-first tensors;
- ``init_state(enc)``: the decoder's first state, a dict of batch-first tensors;
- ``step(prev, enc, state)``: one decoding step from the previous target token -> log-probabilities; ``enc`` has
  one row per sentence, ``prev`` and ``state`` k consecutive rows per sentence (its hypotheses: k = 1 in greedy
  search, the beam size in beam search), which share the sentence's encoder output;
- ``forward(src, src_mask, trg_in, scored=None)``: teacher-forced logits for all target positions at once (or,
  for the loss, only for the positions ``scored`` marks: no output projection for padding).
Because ``enc`` and ``state`` are dicts of batch-first tensors, search can expand and reorder them for beams
without knowing which model it drives (``select``). Two architectures: ``RecurrentSeq2Seq`` (``arch: rnn``)
and ``TransformerSeq2Seq`` (``arch: transformer``, in ``nmt.transformer``).
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig
from torch import Tensor, nn
from torch.nn import functional as F

from nmt.attention import Encoded, build_attention
from nmt.decoder import RecurrentDecoder, State
from nmt.encoder import RecurrentEncoder
from nmt.hardware import project_rows
from nmt.tokenizer import PAD
from nmt.transformer import TransformerSeq2Seq

log = logging.getLogger(__name__)


def select(tensors: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    """Pick rows ``index`` of every batch-first tensor (expand for beams, reorder after a beam step)."""
    return {k: v.index_select(0, index) for k, v in tensors.items()}


class RecurrentSeq2Seq(nn.Module):
    """Embedding -> recurrent encoder -> recurrent decoder with attention -> output projection W_o."""

    def __init__(self, src_vocab: int, trg_vocab: int, cell: str = "gru", emb_size: int = 256,
                 hidden_size: int = 256, decoder_hidden_size: int = 512, encoder_layers: int = 1,
                 decoder_layers: int = 1, direction: str = "bi", attention: str = "bahdanau",
                 attention_size: int = 256, input_feeding: bool = True, init: str = "bridge",
                 dropout: float = 0.3, tie_embeddings: bool = False) -> None:
        super().__init__()
        self.src_embed = nn.Embedding(src_vocab, emb_size, padding_idx=PAD)
        self.trg_embed = nn.Embedding(trg_vocab, emb_size, padding_idx=PAD)
        self.encoder = RecurrentEncoder(cell, emb_size, hidden_size, encoder_layers, direction, dropout)
        memory_size = self.encoder.output_size
        self.decoder = RecurrentDecoder(
            cell, emb_size, decoder_hidden_size, memory_size, decoder_layers,
            build_attention(attention, decoder_hidden_size, memory_size, attention_size),
            init=init, input_feeding=input_feeding, dropout=dropout)
        self.output = nn.Linear(decoder_hidden_size, trg_vocab)
        if tie_embeddings:
            if emb_size != decoder_hidden_size:
                raise ValueError(f"tie_embeddings needs emb_size == decoder_hidden_size "
                                 f"({emb_size} != {decoder_hidden_size})")
            self.output.weight = self.trg_embed.weight
        self.dropout = nn.Dropout(dropout)

    def encode(self, src: Tensor, src_mask: Tensor) -> Encoded:
        memory, final = self.encoder(self.dropout(self.src_embed(src)), src_mask)
        enc = {"memory": memory, "mask": src_mask, "final": final}
        enc.update(self.decoder.attention.precompute(memory, src_mask, final))
        return enc

    def init_state(self, enc: Encoded) -> State:
        return self.decoder.init_state(enc)

    def step(self, prev: Tensor, enc: Encoded, state: State) -> tuple[Tensor, Tensor | None, State]:
        """Previous tokens [B] -> log p(y_i | y_<i, x) [B, V], attention [B, S] (or None), new state."""
        t, a, state = self.decoder.step(self.dropout(self.trg_embed(prev)), enc, state)
        return F.log_softmax(self.output(self.dropout(t)), dim=-1), a, state

    def forward(self, src: Tensor, src_mask: Tensor, trg_in: Tensor,
                scored: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: logits [B, T, V], attention [B, T, S] for targets shifted right (BOS y_1 ...); with
        ``scored`` [B, T] (True: a real target position) the logits of those positions only, [N, V]."""
        enc = self.encode(src, src_mask)
        t, attention, _ = self.decoder(self.dropout(self.trg_embed(trg_in)), enc, self.init_state(enc))
        t = self.dropout(t)
        return (self.output(t) if scored is None else project_rows(self.output, t[scored])), attention


def build_model(cfg: DictConfig, src_vocab: int, trg_vocab: int) -> nn.Module:
    """The model that ``cfg`` (the ``model`` config group) describes."""
    kwargs = {k: v for k, v in cfg.items() if k not in ("name", "arch")}
    if cfg.arch == "rnn":
        return RecurrentSeq2Seq(src_vocab, trg_vocab, **kwargs)
    if cfg.arch == "transformer":
        return TransformerSeq2Seq(src_vocab, trg_vocab, **kwargs)
    raise ValueError(f"unknown model arch {cfg.arch!r}")


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
