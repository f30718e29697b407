"""The recurrent encoder-decoder: embeddings, a recurrent encoder (``nmt.models.encoder``), a recurrent decoder with
attention (``nmt.models.decoder``, ``nmt.models.attention``) and the output projection W_o, behind the ``Seq2Seq``
interface of ``nmt.models.protocol`` (``arch: rnn``)."""

from __future__ import annotations

from torch import Tensor, nn

from nmt.models.attention import build_attention
from nmt.models.cpu_bf16 import project_rows
from nmt.models.decoder import RecurrentDecoder
from nmt.models.encoder import RecurrentEncoder
from nmt.models.output import log_probs
from nmt.models.protocol import Tensors
from nmt.tokenizer import PAD


class RecurrentSeq2Seq(nn.Module):
    """Embedding -> recurrent encoder -> recurrent decoder with attention -> output projection W_o."""

    has_heads = False  # one attention distribution per step

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
        if tie_embeddings:  # the schema (nmt.config.RecurrentConfig) has checked emb_size == decoder_hidden_size
            self.output.weight = self.trg_embed.weight
        self.dropout = nn.Dropout(dropout)

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensors:
        memory, final = self.encoder(self.dropout(self.src_embed(src)), src_mask)
        enc = {"memory": memory, "mask": src_mask, "final": final}
        enc.update(self.decoder.attention.precompute(memory, src_mask, final))
        return enc

    def init_state(self, enc: Tensors) -> Tensors:
        return self.decoder.init_state(enc)

    def step(self, prev: Tensor, enc: Tensors, state: Tensors) -> tuple[Tensor, Tensor | None, Tensors]:
        """Previous tokens [B] -> log p(y_i | y_<i, x) [B, V], attention [B, S] (or None), new state."""
        t, a, state = self.decoder.step(self.dropout(self.trg_embed(prev)), enc, state)
        return log_probs(self.output, self.dropout(t), enc), a, state

    def forward(self, src: Tensor, src_mask: Tensor, trg_in: Tensor,
                scored: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: logits [B, T, V], attention [B, T, S] for targets shifted right (BOS y_1 ...); with
        ``scored`` [B, T] (True: a real target position) the logits of those positions only, [N, V]."""
        enc = self.encode(src, src_mask)
        t, attention, _ = self.decoder(self.dropout(self.trg_embed(trg_in)), enc, self.init_state(enc))
        t = self.dropout(t)
        return (self.output(t) if scored is None else project_rows(self.output, t[scored])), attention

