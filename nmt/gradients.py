"""Gradient flow through time: how much each source word can still move each target word.

For a sentence pair, the norm of the gradient of one target word's log-probability with respect to one source
word's embedding,

    g_ij = || d log p(y_i | y_<i, x) / d e_j ||_2,

for every target position i (and EOS) and source position j (and EOS). In a recurrent model without attention the
gradient reaches e_j only through the recurrence: back through the decoder's i steps and the encoder's steps between
word j and the last one read. Backpropagation through time multiplies one Jacobian per step; for the vanilla RNN,
h_t = tanh(W_hh h_{t-1} + W_xh x_t), each is diag(1 - h_t^2) W_hh, whose factors below 1 shrink the gradient
step after step: g_ij decays with the length of the path. The gates of the LSTM and the GRU keep a path whose
factors stay near 1 (the cell state, the update gate), reading the source reversed (Sutskever et al.) shortens the
path for the first words, attention gives every source position a path of one step to every target position, and
the Transformer has no recurrence to decay along.

``gradient_map`` computes g for one pair; ``path_lengths`` the length of the recurrent path between each (i, j);
``flow_by_path`` averages maps over sentence pairs by that length, the curve of gradient norm against distance.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nmt import NmtError
from nmt.batching import make_batch
from nmt.models.recurrent import RecurrentSeq2Seq


def _quantized(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


def gradient_map(model: nn.Module, src: list[int], trg: list[int]) -> Tensor:
    """g_ij for the pair (``src``, ``trg``) of subword ids, read with teacher forcing: [len(trg) + 1, len(src) + 1]
    (the target's positions and its EOS by the source's and its EOS), in fp32, the model in eval mode. A model
    quantized to int8 has no backward pass: one ``NmtError`` line."""
    if _quantized(model):
        raise NmtError("gradient flow needs a model in floating point: an int8 model (--quantize int8) has no "
                       "backward pass")
    embeddings: list[Tensor] = []

    def leaf(_: nn.Module, __: tuple, out: Tensor) -> Tensor | None:
        if embeddings:  # a shared table also embeds the target: only the first call, the source, is wanted
            return None
        embeddings.append(out.detach().requires_grad_(True))
        return embeddings[0]

    batch = make_batch([src], [trg])
    was_training = model.training
    trainable = [p for p in model.parameters() if p.requires_grad]
    hook = model.src_embed.register_forward_hook(leaf)
    try:
        model.eval()
        for p in trainable:  # gradients for the embeddings only: no weight gradient is computed
            p.requires_grad_(False)
        with torch.enable_grad():
            logits, _ = model(batch.src, batch.src_mask, batch.trg_in)
            chosen = F.log_softmax(logits[0].float(), -1).gather(1, batch.trg_out[0].unsqueeze(1)).squeeze(1)
            rows = [torch.autograd.grad(chosen[i], embeddings[0], retain_graph=i + 1 < len(chosen))[0][0]
                    for i in range(len(chosen))]
    finally:
        hook.remove()
        for p in trainable:
            p.requires_grad_(True)
        model.train(was_training)
    return torch.stack(rows).norm(dim=-1)


def path_lengths(model: nn.Module, src_len: int, trg_len: int) -> Tensor:
    """[trg_len, src_len]: the steps of the recurrent path from source position j to target position i, (S - 1 - j)
    encoder steps after word j (j for a reversed encoder, the shorter of the two directions for a bidirectional
    one) and then i decoder steps. Attention adds a path of one step beside it; a Transformer has no recurrence,
    and its positions are measured as a left-to-right reading would be."""
    j = torch.arange(src_len)
    after = src_len - 1 - j
    direction = model.encoder.direction if isinstance(model, RecurrentSeq2Seq) else "forward"
    encoder_steps = {"forward": after, "reverse": j, "bi": torch.minimum(after, j)}[direction]
    return torch.arange(trg_len).unsqueeze(1) + encoder_steps.unsqueeze(0)


def flow_by_path(model: nn.Module, pairs: Iterable[tuple[list[int], list[int]]]) -> dict[int, float]:
    """The mean g_ij over ``pairs`` of subword ids, by the length of the recurrent path between i and j."""
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for src, trg in pairs:
        g = gradient_map(model, src, trg)
        lengths = path_lengths(model, g.size(1), g.size(0))
        for length, value in zip(lengths.flatten().tolist(), g.flatten().tolist(), strict=True):
            sums[length] = sums.get(length, 0.0) + value
            counts[length] = counts.get(length, 0) + 1
    return {length: sums[length] / counts[length] for length in sorted(sums)}
