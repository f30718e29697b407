"""Transformer encoder-decoder (Vaswani et al. 2017) behind the interface of
``nmt.models.protocol``.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V
    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,   head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)
    FFN(x)             = max(0, x W_1 + b_1) W_2 + b_2          (position-wise)
    post-norm: x = LayerNorm(x + Dropout(Sublayer(x)))    pre-norm: x = x + Dropout(Sublayer(LayerNorm(x)))
    input              = sqrt(d_model) E y + PE(pos),     PE(pos, 2i) = sin(pos / 10000^(2i / d_model)),
                                                          PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))
                                                          (or a learned table of ``max_positions`` rows)

Encoder layers: self-attention, FFN. Decoder layers: causal self-attention, cross-attention over the encoder
output, FFN. Source padding is masked in the encoder's self-attention and in the cross-attention; target
padding (always after the real tokens) is hidden from real positions by the causal mask.

Decoding one position at a time keeps a key/value cache, so ``step`` costs one position, not the prefix:
- ``enc``:   "mask" [N, S]; "ck{l}", "cv{l}" [N, heads, S, d_k]: the cross-attention keys and values of
             decoder layer l, projected from the encoder output once per sentence and shared by its beams;
- ``state``: "pos" [N * k] (the position being decoded); "k{l}", "v{l}" [N * k, heads, t, d_k]: the
             self-attention keys and values of the t positions decoded so far, one more after each step, for the
             k hypotheses of each sentence (consecutive rows).

The attention that ``step`` and ``forward`` return is the last decoder layer's cross-attention averaged over
heads; ``forward(..., return_all_attention=True)`` returns every layer's and head's instead.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nmt.models.cpu_bf16 import project_rows
from nmt.models.output import log_probs
from nmt.models.protocol import Tensors
from nmt.tokenizer import PAD

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def sinusoid(positions: Tensor, d_model: int) -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...): positions [...] -> [..., d]."""
    rates = 10000.0 ** (-torch.arange(0, d_model, 2, device=positions.device, dtype=torch.float) / d_model)
    angles = positions.unsqueeze(-1).float() * rates
    return torch.stack([angles.sin(), angles.cos()], -1).flatten(-2)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False,
           dropout: float = 0.0, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
    """softmax(Q K^T / sqrt(d_k)) V over [B, heads, len, d_k]; ``mask`` (True: attend) broadcasts to Q K^T.

    With ``need_weights`` the product is explicit and the weights (before dropout) come back; without, the
    fused ``scaled_dot_product_attention`` runs.
    """
    if not need_weights:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal)
        return out, None
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if causal:
        scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(1), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(-1)
    return F.dropout(weights, dropout, training=dropout > 0) @ v, weights


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O; ``kv`` projects keys and values (to cache them)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))

    def heads(self, x: Tensor) -> Tensor:
        """[B, L, d_model] -> [B, heads, L, d_k]."""
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """K W^K and V W^V, split into heads: [B, heads, L, d_k] each."""
        return self.heads(self.k(x)), self.heads(self.v(x))

    def forward(self, x: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """Queries from ``x`` [B, T, d_model] -> output [B, T, d_model], weights [B, heads, T, S] or None."""
        dropout = self.dropout if self.training else 0.0
        out, weights = attend(self.heads(self.q(x)), k, v, mask, causal, dropout, need_weights)
        return self.o(out.transpose(1, 2).flatten(2)), weights


class Layer(nn.Module):
    """Residual sublayers with LayerNorm before (pre-norm) or after (post-norm) them; the FFN comes last."""

    def __init__(self, d_model: int, ff_size: int, dropout: float, norm: str, activation: str,
                 sublayers: int) -> None:
        super().__init__()
        self.pre_norm = norm == "pre"
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(sublayers))
        self.ffn = nn.Sequential(nn.Linear(d_model, ff_size), ACTIVATIONS[activation](),
                                 nn.Linear(ff_size, d_model))
        self.dropout = nn.Dropout(dropout)

    def enter(self, i: int, x: Tensor) -> Tensor:
        """The input of sublayer i: LayerNorm(x) with pre-norm, x with post-norm."""
        return self.norms[i](x) if self.pre_norm else x

    def leave(self, i: int, x: Tensor, out: Tensor) -> Tensor:
        """x + Dropout(out), followed by LayerNorm with post-norm."""
        x = x + self.dropout(out)
        return x if self.pre_norm else self.norms[i](x)

    def feed_forward(self, x: Tensor) -> Tensor:
        """The last sublayer: the position-wise FFN(x) = max(0, x W_1 + b_1) W_2 + b_2."""
        i = len(self.norms) - 1
        return self.leave(i, x, self.ffn(self.enter(i, x)))


class EncoderLayer(Layer):
    """Self-attention over the source (padding masked), then the FFN."""

    def __init__(self, d_model: int, num_heads: int, ff_size: int, dropout: float, norm: str,
                 activation: str) -> None:
        super().__init__(d_model, ff_size, dropout, norm, activation, sublayers=2)
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.enter(0, x)
        x = self.leave(0, x, self.self_attn(h, *self.self_attn.kv(h), mask=mask)[0])
        return self.feed_forward(x)


class DecoderLayer(Layer):
    """Causal self-attention, cross-attention over the encoder output (padding masked), then the FFN."""

    def __init__(self, d_model: int, num_heads: int, ff_size: int, dropout: float, norm: str,
                 activation: str) -> None:
        super().__init__(d_model, ff_size, dropout, norm, activation, sublayers=3)
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout)

    def forward(self, x: Tensor, memory_kv: tuple[Tensor, Tensor], mask: Tensor,
                cache: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """Targets x [N * k, T, d_model] (k hypotheses per sentence of ``memory_kv``) -> output, cross-attention
        [N * k, heads, T, S], self-attention keys/values.

        ``cache`` None: all positions at once under the causal mask. Otherwise the keys/values of the earlier
        positions, to which this step's (T = 1) are appended.
        """
        h = self.enter(0, x)
        k, v = self.self_attn.kv(h)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        x = self.leave(0, x, self.self_attn(h, k, v, causal=cache is None)[0])
        # The k hypotheses of a sentence (k consecutive rows of x) query its memory as k * T positions of one row.
        sentences, length = memory_kv[0].size(0), x.size(1)
        out, weights = self.cross_attn(self.enter(1, x).reshape(sentences, -1, x.size(2)), *memory_kv, mask=mask,
                                       need_weights=True)
        weights = weights.unflatten(2, (-1, length)).transpose(1, 2).flatten(0, 1)
        return self.feed_forward(self.leave(1, x, out.reshape(x.shape))), weights, (k, v)


class TransformerSeq2Seq(nn.Module):
    """Embeddings + positions -> encoder layers -> decoder layers (with cross-attention) -> output layer."""

    has_heads = True  # forward(..., return_all_attention=True): every layer's and head's cross-attention

    def __init__(self, src_vocab: int, trg_vocab: int, num_layers: int = 3, d_model: int = 256,
                 num_heads: int = 4, ff_size: int = 1024, dropout: float = 0.1, positions: str = "sinusoidal",
                 max_positions: int = 256, norm: str = "pre", activation: str = "relu",
                 tie_embeddings: bool = True, shared_embeddings: bool = False) -> None:
        super().__init__()
        # The schema (nmt.config.TransformerConfig) has checked the choices and sizes, and that a shared table comes
        # with a joint vocabulary.
        assert not shared_embeddings or src_vocab == trg_vocab, (src_vocab, trg_vocab)
        self.d_model, self.num_heads, self.max_positions = d_model, num_heads, max_positions
        self.trg_embed = nn.Embedding(trg_vocab, d_model, padding_idx=PAD)
        self.src_embed = (self.trg_embed if shared_embeddings
                          else nn.Embedding(src_vocab, d_model, padding_idx=PAD))
        self.pos_embed = nn.Embedding(max_positions, d_model) if positions == "learned" else None
        layer_args = (d_model, num_heads, ff_size, dropout, norm, activation)
        self.encoder = nn.ModuleList(EncoderLayer(*layer_args) for _ in range(num_layers))
        self.decoder = nn.ModuleList(DecoderLayer(*layer_args) for _ in range(num_layers))
        # Pre-norm leaves the residual stream unnormalized: a final LayerNorm on each side.
        self.encoder_norm = nn.LayerNorm(d_model) if norm == "pre" else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if norm == "pre" else nn.Identity()
        self.output = nn.Linear(d_model, trg_vocab, bias=False)
        self.dropout = nn.Dropout(dropout)
        self._init_weights()
        if tie_embeddings:
            self.output.weight = self.trg_embed.weight

    def _init_weights(self) -> None:
        """Xavier-uniform projections; embeddings N(0, 1/d_model), so sqrt(d_model) E y has unit scale."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for table in (self.src_embed, self.trg_embed):
            nn.init.normal_(table.weight, std=self.d_model ** -0.5)
            nn.init.zeros_(table.weight[PAD])

    def embed(self, table: nn.Embedding, tokens: Tensor, positions: Tensor, length: int) -> Tensor:
        """Dropout(sqrt(d_model) E x + PE(pos)); ``length`` (highest position + 1) is checked if learned."""
        if self.pos_embed is None:
            pe = sinusoid(positions, self.d_model)
        elif length > self.max_positions:
            raise ValueError(f"a sequence of {length} positions, but the learned positions end at "
                             f"max_positions={self.max_positions}")
        else:
            pe = self.pos_embed(positions)
        return self.dropout(table(tokens) * math.sqrt(self.d_model) + pe)

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensors:
        x = self.embed(self.src_embed, src, torch.arange(src.size(1), device=src.device), src.size(1))
        mask = src_mask[:, None, None, :]
        for layer in self.encoder:
            x = layer(x, mask)
        x = self.encoder_norm(x)
        enc = {"mask": src_mask}
        for i, layer in enumerate(self.decoder):
            enc[f"ck{i}"], enc[f"cv{i}"] = layer.cross_attn.kv(x)
        return enc

    def init_state(self, enc: Tensors) -> Tensors:
        """Position 0 and empty self-attention caches [B, heads, 0, d_k]."""
        batch = enc["mask"].size(0)
        empty = enc["ck0"].new_zeros(batch, self.num_heads, 0, self.d_model // self.num_heads)
        state = {"pos": enc["mask"].new_zeros(batch, dtype=torch.long)}
        for i in range(len(self.decoder)):
            state[f"k{i}"], state[f"v{i}"] = empty, empty
        return state

    def decode(self, x: Tensor, enc: Tensors, state: Tensors | None) -> tuple[Tensor, list[Tensor], Tensors]:
        """Embedded targets -> the last layer's normalised outputs, each layer's cross-attention, caches (``state``
        None: all at once)."""
        mask, weights, caches = enc["mask"][:, None, None, :], [], {}
        for i, layer in enumerate(self.decoder):
            cache = None if state is None else (state[f"k{i}"], state[f"v{i}"])
            x, a, (caches[f"k{i}"], caches[f"v{i}"]) = layer(x, (enc[f"ck{i}"], enc[f"cv{i}"]), mask, cache)
            weights.append(a)
        return self.decoder_norm(x), weights, caches

    def step(self, prev: Tensor, enc: Tensors, state: Tensors) -> tuple[Tensor, Tensor, Tensors]:
        """Previous tokens [B] -> log p(y_i | y_<i, x) [B, V], cross-attention [B, S], new state."""
        pos = state["pos"]
        x = self.embed(self.trg_embed, prev[:, None], pos[:, None], state["k0"].size(2) + 1)
        x, weights, new_state = self.decode(x, enc, state)
        new_state["pos"] = pos + 1
        return log_probs(self.output, x[:, 0], enc), weights[-1][:, :, 0].mean(1), new_state

    def forward(self, src: Tensor, src_mask: Tensor, trg_in: Tensor, scored: Tensor | None = None,
                return_all_attention: bool = False) -> tuple[Tensor, Tensor]:
        """Teacher forcing: logits [B, T, V] (of the ``scored`` positions only, [N, V], if given) and the last
        layer's head-averaged cross-attention [B, T, S].

        With ``return_all_attention`` the attention is every layer's and head's: [B, layers, heads, T, S].
        """
        enc = self.encode(src, src_mask)
        length = trg_in.size(1)
        x = self.embed(self.trg_embed, trg_in, torch.arange(length, device=trg_in.device), length)
        x, weights, _ = self.decode(x, enc, None)
        logits = self.output(x) if scored is None else project_rows(self.output, x[scored])
        return logits, torch.stack(weights, 1) if return_all_attention else weights[-1].mean(1)
