"""Builders shared by the tests: small models of every design with fixed toy sentences, so that the tests of
search, stepwise gradients, bf16 rows and the model contract use the same ones; and toy training pairs with their
model and train settings, for the tests of updates on one process and on several."""

from __future__ import annotations

import torch
from datasets import Dataset
from torch import nn

from nmt.models.ensemble import Ensemble
from nmt.models.recurrent import RecurrentSeq2Seq
from nmt.models.transformer import TransformerSeq2Seq
from tests.conftest import run_config

# Source and target ids of mixed lengths (so that a batch pads both sides); every design's vocabulary holds them.
SOURCES = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17]]
TARGETS = [[4, 5, 6], [7, 8, 9, 10, 11], [12]]

# The recurrent variants: cells, encoder directions, stacking, attention kinds, initial state, input feeding, ties.
RNN_VARIANTS = [
    {},
    {"cell": "lstm", "direction": "reverse", "encoder_layers": 2, "decoder_layers": 2},
    {"cell": "rnn", "direction": "forward", "init": "zeros", "input_feeding": False},
    {"attention": "luong_general"},
    {"attention": "luong_dot", "hidden_size": 16, "decoder_hidden_size": 32},
    {"attention": "none"},
    {"tie_embeddings": True, "emb_size": 32, "decoder_hidden_size": 32},
]
TRANSFORMER_VARIANTS = [
    {"norm": "pre"},
    {"norm": "post"},
    {"norm": "post", "positions": "learned", "tie_embeddings": False, "shared_embeddings": False},
]
RNN_VOCAB = (23, 19)  # source, target
TRANSFORMER_VOCAB = 29  # one table for both sides


def small_rnn(**options: object) -> RecurrentSeq2Seq:
    """A recurrent model of a few dozen units, dropout off, in eval mode."""
    settings = {"emb_size": 12, "hidden_size": 10, "decoder_hidden_size": 14, "attention_size": 9, "dropout": 0.0}
    return RecurrentSeq2Seq(*RNN_VOCAB, **{**settings, **options}).eval()


def small_transformer(**options: object) -> TransformerSeq2Seq:
    """A Transformer of 2 layers of 4 heads, d_model 16, in eval mode."""
    settings = {"num_layers": 2, "d_model": 16, "num_heads": 4, "ff_size": 32, "dropout": 0.1, "max_positions": 32}
    return TransformerSeq2Seq(TRANSFORMER_VOCAB, TRANSFORMER_VOCAB, **{**settings, **options}).eval()


def small_ensemble(design: str) -> Ensemble:
    """Two differently initialised small models of one design ("rnn" or "transformer")."""
    build = small_rnn if design == "rnn" else small_transformer
    members = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        members.append(build())
    return Ensemble(members).eval()


def toy_data(n: int = 24, seed: int = 0) -> tuple[Dataset, list[int]]:
    """``n`` tokenised training pairs of 2 to 8 ids from 4 to 39, and their target lengths."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 9, (n, 2), generator=g).tolist()
    rows = {"src_ids": [torch.randint(4, 40, (s,), generator=g).tolist() for s, _ in lengths],
            "trg_ids": [torch.randint(4, 40, (t,), generator=g).tolist() for _, t in lengths]}
    return Dataset.from_dict(rows), [t for _, t in lengths]


def toy_model() -> nn.Module:
    """A recurrent model for :func:`toy_data`, the same each call (seed 0), dropout off."""
    torch.manual_seed(0)
    return RecurrentSeq2Seq(40, 40, emb_size=16, hidden_size=16, decoder_hidden_size=24, attention_size=16,
                            dropout=0.0)


TOY_TRAIN = run_config(["train.precision=fp32", "train.label_smoothing=0.1", "train.clip_grad_norm=0"]).train
