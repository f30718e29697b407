"""The request and response bodies of the server's HTTP API (``nmt serve``), as pydantic models: they validate
requests and describe both endpoints in the OpenAPI document (``/openapi.json``).

- ``POST /translate``: LibreTranslate's API (``q``, ``source``, ``target``, ``format``, ``alternatives``,
  ``api_key``) -> ``translatedText`` (and ``alternatives``); lists in, lists out.
- ``POST /v1/translate``: sentences and search settings -> per sentence the translation, its n-best list,
  per-token log-probabilities, subword pieces and words of both sides, the word alignment, and, when asked for,
  the attention (per layer and head too for a Transformer).
- ``GET /v1/limits``: the most a request may ask for (characters, sentences, bytes, beam, n-best).

The search settings of ``/v1/translate`` are the decoding settings that ``nmt.config.DecodeConfig`` opens to requests,
with its ranges, its help as their description, and each one's ceiling for a request.
"""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Le
from pydantic import BaseModel, ConfigDict, Field, create_model

from nmt.config import DecodeConfig
from nmt.decode_settings import KEYS, option


class ErrorBody(BaseModel):
    """Every error: a status code of 4xx (5xx only for a server fault) and this body."""

    error: str = Field(description="what went wrong, in plain words")


class LibreTranslateRequest(BaseModel):
    """LibreTranslate's request, JSON or form-encoded. The language pair picks the model (the first served for it),
    unless ``model`` names one."""

    model_config = ConfigDict(extra="ignore")

    q: str | list[str] = Field(description="text, or a list of texts; a text with several lines is translated "
                                           "line by line")
    source: str = Field(description="source language code ('auto' is not supported)")
    target: str = Field(description="target language code")
    format: str = Field("text", description="'text' (HTML is not supported)")
    alternatives: int = Field(0, ge=0, description="how many alternative translations to return as well")
    api_key: str | None = Field(None, description="the API key, where the server requires one")
    model: str | None = Field(None, description="an nmt extension: the served model to use")


class LibreTranslateResponse(BaseModel):
    """``translatedText`` mirrors ``q`` (a text or a list); ``alternatives`` only when asked for."""

    translatedText: str | list[str]
    alternatives: list[str] | list[list[str]] | None = None


class Language(BaseModel):
    """A language of ``GET /languages`` (LibreTranslate's shape): its code, name, and the codes it translates to."""

    code: str
    name: str
    targets: list[str]


SEARCH_SETTINGS = tuple(key for key in KEYS if option(key).request)  # the decoding settings a request may choose


def _search_field(key: str) -> tuple[Any, Any]:
    """A request's field for the decoding setting ``key``: its type and range, within the request's ceiling;
    optional (None: the model's setting)."""
    info, ceiling = DecodeConfig.model_fields[key], option(key).request_max
    bounds = (*info.metadata, *([Le(ceiling)] if ceiling is not None else []))
    return Annotated[(info.annotation, *bounds)] | None, Field(None, description=option(key).help)


TranslateRequest: Any = create_model(  # type: ignore[call-overload]  # fields derived from the decode schema
    "TranslateRequest",
    __config__=ConfigDict(extra="forbid"),
    __doc__="""Sentences for one model, with search settings; a setting left out takes the model's default (its
    run's ``decode`` settings and the server's command line).""",
    model=(str | None, Field(None, description="a served model's name (default: the first served)")),
    sentences=(list[str], Field(description="detokenized sentences; a blank one gives a blank translation")),
    **{key: _search_field(key) for key in SEARCH_SETTINGS},
    attention=(bool, Field(False, description="return the attention matrix (and a Transformer's per layer and "
                                              "head)")),
    gradients=(bool, Field(False, description="return the gradient flow map of each translation: "
                                              "||d log p(y_i) / d e_j|| for target piece i and source piece j "
                                              "(not for a model served with --quantize int8)")),
    api_key=(str | None, Field(None, description="the API key, where the server requires one")),
)


class Scored(BaseModel):
    """A hypothesis of the n-best list."""

    text: str
    score: float = Field(description="log-probability")


class SentenceResult(BaseModel):
    """One sentence's translation. Attention rows are target pieces + EOS, columns source pieces + EOS;
    ``src_word_ids``/``trg_word_ids`` give the word of each piece, to merge attention into words (sum over
    a source word's pieces, mean over a target word's)."""

    text: str
    score: float = Field(description="log-probability of the translation")
    token_scores: list[float] | None = Field(description="log-probability of each target piece, EOS last; null from "
                                                     "a model served with --engine ctranslate2, which gives none")
    nbest: list[Scored]
    src_pieces: list[str]
    trg_pieces: list[str]
    src_words: list[str]
    trg_words: list[str]
    src_word_ids: list[int]
    trg_word_ids: list[int]
    alignment: str = Field(description="Pharaoh links 'i-j' (source word i, target word j, 0-based)")
    attention: list[list[float]] | None = Field(
        None, description="[target pieces + EOS][source pieces + EOS], the search's attention (a Transformer's: "
                          "its last layer's mean over heads); only when asked for")
    attention_heads: list[list[list[list[float]]]] | None = Field(
        None, description="Transformer: [layer][head][target pieces + EOS][source pieces + EOS], from forced "
                          "decoding of the translation; only when asked for")
    gradients: list[list[float]] | None = Field(
        None, description="[target pieces + EOS][source pieces + EOS]: ||d log p(y_i) / d e_j||, the norm of the "
                          "gradient of each target piece's log-probability with respect to each source piece's "
                          "embedding, the translation read with teacher forcing; only when asked for")


class TranslateResponse(BaseModel):
    """The model used, the search settings in effect, and a result per sentence, in order."""

    model: str
    settings: dict[str, float | int]
    translations: list[SentenceResult]


class BatchingStats(BaseModel):
    """Micro-batching counters of a model since the server started."""

    batches: int
    sentences: int
    requests: int
    rejected: int = Field(description="requests refused with 503 because the queue was full")
    queued: int = Field(description="sentences waiting now")


class ModelInfo(BaseModel):
    """A served model: what it is, how it decodes by default, its run's scores and its batching counters."""

    name: str
    run: str
    checkpoint: str
    design: str
    arch: str
    engine: str = Field("nmt", description="what translates: 'nmt', or 'ctranslate2' (the run's CTranslate2 export: "
                                           "no per-head attention, gradients, sampling, shortlists or token scores)")
    parameters: int
    source: str
    target: str
    max_length: int = Field(description="the most source subwords a sentence may have")
    device: str
    precision: str
    quantize: str | None
    attention: str = Field(description="'heads' (a Transformer: per layer and head), 'single' or 'none'")
    layers: int | None = None
    heads: int | None = None
    decode: dict[str, float | int]
    scores: dict[str, dict[str, float | int]] = Field(
        description="the run's best dev scores (by its training metric) and its test scores, from metrics.jsonl")
    batching: BatchingStats


class Limits(BaseModel):
    """What a request may ask of this server at most (``nmt serve``'s limit options): anything more is refused, so
    a client can check before it sends. The page at ``/`` bounds its inputs by these."""

    max_chars: int = Field(description="characters per sentence (a line of LibreTranslate's q), counted before "
                                       "whitespace is tidied; more: 413")
    max_sentences: int = Field(description="sentences per request (lines, for LibreTranslate's API), blank ones "
                                           "included; more: 413")
    max_body_bytes: int = Field(description="bytes of a request body; more: 413")
    max_beam: int = Field(description="the largest beam_size; more: 422")
    max_nbest: int = Field(description="the most hypotheses per sentence (nbest, or LibreTranslate's alternatives "
                                       "+ 1); more: 422")
    request_timeout: float = Field(description="seconds a request may wait for its translation; then 504")


class Health(BaseModel):
    """'ready' once every model is loaded and warmed up; 'draining' while shutting down; with several worker
    processes (``nmt serve --workers N``), which one answered."""

    status: str
    models: list[str]
    api_key_required: bool
    worker: int | None = Field(None, description="with --workers N > 1: the index (1 to N) of the worker process "
                                                 "that answered; absent with one")
    pid: int | None = Field(None, description="with --workers N > 1: that worker's process id; absent with one")
