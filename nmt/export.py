"""A Transformer run written as a CTranslate2 model: the engine many deploy for CPU inference of Transformers.

    nmt export --format ctranslate2 -m runs/m30k_tf            # -> runs/m30k_tf/ctranslate2/
    nmt translate -m runs/m30k_tf --engine ctranslate2 -i test.de -o test.hyp

Our weights map onto CTranslate2's Transformer specification one to one:
- embeddings (scaled by sqrt(d_model)) and positions: our sinusoidal table interleaves sin and cos (PE(pos, 2i),
  PE(pos, 2i+1)) where CTranslate2's own concatenates them, so the table is written out as the model's position
  encodings (a learned table is written as it is);
- each layer's LayerNorms (before or after each sublayer, as ``model.norm`` says, epsilon 1e-5), self-attention's
  query, key and value projections fused into one, cross-attention's key and value projections fused into one;
- the final LayerNorms of pre-norm, the output projection (the target table when tied);
- the vocabularies are the sentencepiece pieces (PAD, UNK, BOS, EOS = <pad>, <unk>, <s>, </s>); the source gets
  EOS appended as ours does (``add_source_eos``).

The folder also holds the run's sentencepiece model(s) and ``nmt.json`` (the run's decoding settings and length
limit), so that :mod:`nmt.ct2` translates text with it. Recurrent runs have no CTranslate2 counterpart.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from nmt import NmtError, checkpoint, install_hint
from nmt.config import TransformerConfig
from nmt.models.builder import build_model
from nmt.models.transformer import DecoderLayer, EncoderLayer, TransformerSeq2Seq, sinusoid
from nmt.rundir import RunDir
from nmt.tokenizer import tokenizer_files

if TYPE_CHECKING:
    from ctranslate2.specs import TransformerSpec

FORMATS = ("ctranslate2",)
EXPORT_FOLDER = "ctranslate2"  # where `nmt export --format ctranslate2 -m RUN` writes by default, in the run
SETTINGS = "nmt.json"  # beside CTranslate2's files: where the model came from, its decoding settings
LAYER_NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's default, which every LayerNorm of ours uses
SINUSOID_ROWS = 1024  # positions written for a sinusoidal table (CTranslate2 truncates inputs at 1024 tokens)


def ctranslate2_module() -> Any:
    """``import ctranslate2``; where it is not installed, one line naming the install command."""
    try:
        import ctranslate2
    except ImportError:
        raise NmtError(f"CTranslate2 is not installed: {install_hint('ctranslate2')}") from None
    return ctranslate2


def _array(t: Tensor) -> Any:
    return t.detach().to(torch.float32).contiguous().numpy()


def _linear(spec: Any, *layers: nn.Linear) -> None:
    """One CTranslate2 linear layer from ours (several: their outputs stacked, as in a fused projection)."""
    spec.weight = _array(torch.cat([layer.weight for layer in layers]))
    if layers[0].bias is not None:
        spec.bias = _array(torch.cat([layer.bias for layer in layers]))


def _norm(spec: Any, norm: nn.Module) -> None:
    spec.gamma, spec.beta = _array(norm.weight), _array(norm.bias)


def _encoder_layer(spec: Any, layer: EncoderLayer) -> None:
    attn = layer.self_attn
    _norm(spec.self_attention.layer_norm, layer.norms[0])
    _linear(spec.self_attention.linear[0], attn.q, attn.k, attn.v)
    _linear(spec.self_attention.linear[1], attn.o)
    _feed_forward(spec.ffn, layer)


def _decoder_layer(spec: Any, layer: DecoderLayer) -> None:
    self_attn, cross = layer.self_attn, layer.cross_attn
    _norm(spec.self_attention.layer_norm, layer.norms[0])
    _linear(spec.self_attention.linear[0], self_attn.q, self_attn.k, self_attn.v)
    _linear(spec.self_attention.linear[1], self_attn.o)
    _norm(spec.attention.layer_norm, layer.norms[1])
    _linear(spec.attention.linear[0], cross.q)
    _linear(spec.attention.linear[1], cross.k, cross.v)
    _linear(spec.attention.linear[2], cross.o)
    _feed_forward(spec.ffn, layer)


def _feed_forward(spec: Any, layer: EncoderLayer | DecoderLayer) -> None:
    _norm(spec.layer_norm, layer.norms[-1])
    _linear(spec.linear_0, layer.ffn[0])
    _linear(spec.linear_1, layer.ffn[2])


def transformer_spec(model: TransformerSeq2Seq, cfg: TransformerConfig, src_pieces: list[str],
                     trg_pieces: list[str]) -> TransformerSpec:
    """CTranslate2's specification of ``model`` (built from ``cfg``) with its weights and vocabularies."""
    specs = ctranslate2_module().specs
    activation = {"relu": specs.Activation.RELU, "gelu": specs.Activation.GELU}[cfg.activation]
    pre_norm = cfg.norm == "pre"
    # alignment_heads = every head: the attention CTranslate2 returns is ours, the last layer's mean over heads
    spec = specs.TransformerSpec.from_config(cfg.num_layers, cfg.num_heads, pre_norm=pre_norm,
                                             activation=activation, alignment_heads=cfg.num_heads)
    positions = (_array(model.pos_embed.weight) if model.pos_embed is not None
                 else _array(sinusoid(torch.arange(SINUSOID_ROWS), cfg.d_model)))
    encoder, decoder = spec.encoder, spec.decoder
    encoder.embeddings[0].weight = _array(model.src_embed.weight)
    encoder.position_encodings.encodings = positions
    decoder.embeddings.weight = _array(model.trg_embed.weight)
    decoder.position_encodings.encodings = positions
    for layer_spec, layer in zip(encoder.layer, model.encoder, strict=True):
        _encoder_layer(layer_spec, layer)
    for layer_spec, layer in zip(decoder.layer, model.decoder, strict=True):
        _decoder_layer(layer_spec, layer)
    if pre_norm:
        _norm(encoder.layer_norm, model.encoder_norm)
        _norm(decoder.layer_norm, model.decoder_norm)
    _linear(decoder.projection, model.output)
    spec.config.layer_norm_epsilon = LAYER_NORM_EPSILON
    spec.config.add_source_eos = True
    spec.register_source_vocabulary(src_pieces)
    spec.register_target_vocabulary(trg_pieces)
    return spec


def export_ctranslate2(run_dir: str | Path, output: str | Path, checkpoint_name: str = RunDir.BEST,
                       force: bool = False) -> Path:
    """Write the Transformer of ``run_dir`` (its ``checkpoint_name``) as a CTranslate2 model folder ``output``,
    in float32 (CTranslate2 quantizes at load time: ``compute_type="int8"``). An existing ``output`` is replaced
    only with ``force``; the folder appears complete or not at all. A recurrent run is one ``NmtError`` line."""
    run, out = RunDir(run_dir), Path(output)
    cfg = run.config()
    if not isinstance(cfg.model, TransformerConfig):
        raise NmtError(f"{run} is a recurrent model ({cfg.model.name}): CTranslate2 runs Transformers only "
                       f"(model=transformer)")
    if out.exists() and not force:
        raise NmtError(f"{out} exists: choose another -o, or replace it with --force")
    if not out.parent.is_dir():
        raise NmtError(f"-o {out}: folder {out.parent} not found")
    ctranslate2_module()  # before the weights are read
    src_tok, trg_tok = run.tokenizers(cfg.tokenizer.joint)
    model = build_model(cfg.model, len(src_tok), len(trg_tok))
    checkpoint.load_weights(model, run.checkpoint(checkpoint_name))
    spec = transformer_spec(model.eval(), cfg.model, src_tok.pieces(range(len(src_tok))),
                            trg_tok.pieces(range(len(trg_tok))))
    spec.validate()
    spec.optimize(quantization="float32")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        spec.save(str(staging))
        src_file, trg_file = tokenizer_files(run.path, cfg.tokenizer.joint)
        shutil.copyfile(src_file, staging / "source.model")
        shutil.copyfile(trg_file, staging / "target.model")
        settings = {"run": str(run.path.resolve()), "checkpoint": checkpoint_name,
                    "max_length": cfg.data.max_length, "decode": cfg.decode.model_dump()}
        (staging / SETTINGS).write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
