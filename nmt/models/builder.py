"""A model from its config group (``conf/model``, schema ``nmt.config.ModelConfig``)."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from nmt.models.protocol import Seq2Seq
from nmt.models.recurrent import RecurrentSeq2Seq
from nmt.models.transformer import TransformerSeq2Seq


def build_model(cfg: DictConfig, src_vocab: int, trg_vocab: int) -> Seq2Seq:
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
