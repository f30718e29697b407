"""The interface every translation model offers search, training, alignment and the server: ``Seq2Seq``.

- ``encode(src, src_mask)``: run the encoder once per sentence; returns ``Tensors``;
- ``init_state(enc)``: the decoder's first state, ``Tensors``;
- ``step(prev, enc, state)``: one decoding step from the previous target token -> log-probabilities; ``enc`` has
  one row per sentence, ``prev`` and ``state`` k consecutive rows per sentence (its hypotheses: k = 1 in greedy
  search, the beam size in beam search), which share the sentence's encoder output;
- ``forward(src, src_mask, trg_in, scored=None)``: teacher-forced logits for all target positions at once (or,
  for the loss, only for the positions ``scored`` marks: no output projection for padding);
- ``has_heads``: whether ``forward(..., return_all_attention=True)`` gives every layer's and head's attention.

Because encoder outputs and decoder states are dicts of batch-first tensors, search can expand and reorder them for
beams (:func:`select`) without knowing which model it drives. The designs: ``RecurrentSeq2Seq``
(``nmt.models.recurrent``), ``TransformerSeq2Seq`` (``nmt.models.transformer``) and an ``Ensemble`` of either
(``nmt.models.ensemble``); ``nmt.models.builder`` makes one from its config.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor

Tensors = dict[str, Tensor]  # an encoder output or a decoder state: batch-first tensors by name


class Seq2Seq(Protocol):
    """An encoder-decoder translation model (see the module docstring); implemented by ``nn.Module`` classes."""

    has_heads: bool

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensors: ...

    def init_state(self, enc: Tensors) -> Tensors: ...

    def step(self, prev: Tensor, enc: Tensors, state: Tensors) -> tuple[Tensor, Tensor | None, Tensors]: ...

    def __call__(self, src: Tensor, src_mask: Tensor, trg_in: Tensor, scored: Tensor | None = None,
                 **options: Any) -> tuple[Tensor, Tensor | None]: ...


def select(tensors: Tensors, index: Tensor) -> Tensors:
    """Pick rows ``index`` of every batch-first tensor (expand for beams, reorder after a beam step)."""
    return {k: v.index_select(0, index) for k, v in tensors.items()}
