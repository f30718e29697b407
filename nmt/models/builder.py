"""A model from its config group (``conf/model``, schema ``nmt.config.ModelConfig``)."""

from __future__ import annotations

from torch import nn

from nmt.config import ModelConfig, RecurrentConfig
from nmt.models.protocol import Seq2Seq
from nmt.models.recurrent import RecurrentSeq2Seq
from nmt.models.transformer import TransformerSeq2Seq


def build_model(cfg: ModelConfig, src_vocab: int, trg_vocab: int) -> Seq2Seq:
    """The model that ``cfg`` (the typed ``model`` group) describes."""
    kwargs = cfg.model_dump(exclude={"name", "arch"})
    if isinstance(cfg, RecurrentConfig):
        return RecurrentSeq2Seq(src_vocab, trg_vocab, **kwargs)
    return TransformerSeq2Seq(src_vocab, trg_vocab, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
