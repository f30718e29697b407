"""Decoding settings given outside a run's config: the flags of ``nmt translate`` and ``nmt serve``, the keyword
arguments of ``Translator.from_run``, the search settings of a server request. Each is a field of
``nmt.config.DecodeConfig``, whose :class:`nmt.config.Option` names its flag and help; values are checked against
the field, strictly (2.0 is no beam size), and a mistake is one ``NmtError`` line naming the flag or the key."""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt
from pydantic import TypeAdapter, ValidationError

from nmt import NmtError
from nmt.config import DecodeConfig, Option

KEYS = tuple(DecodeConfig.model_fields)  # every decoding setting, in the schema's order


def option(key: str) -> Option:
    """The :class:`Option` of the decoding setting ``key``."""
    return next(m for m in DecodeConfig.model_fields[key].metadata if isinstance(m, Option))


def choices(key: str) -> tuple[str, ...]:
    """The values the decoding setting ``key`` may take, where it is a choice (else none)."""
    annotation = DecodeConfig.model_fields[key].annotation
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()


def allowed(key: str) -> str:
    """What a value of the decoding setting ``key`` must be, in words: 'an integer >= 1 (1: greedy search)'."""
    if choices(key):
        return " or ".join(choices(key))
    info, note, most = DecodeConfig.model_fields[key], option(key).note, option(key).most
    if info.annotation is bool:
        return "true or false"
    kind = "an integer" if info.annotation is int else "a finite number"
    low = next(m for m in info.metadata if isinstance(m, Ge | Gt))
    if isinstance(low, Gt):
        text = f"{kind} above {low.gt:g}" + (f", at most {most}" if most else "")
    else:
        text = f"{kind} from {low.ge:g} to {most}" if most else f"{kind} >= {low.ge:g}"
    return f"{text} ({note})" if note else text


@functools.cache
def _validator(key: str) -> Callable[[Any], object]:
    info = DecodeConfig.model_fields[key]
    adapter: TypeAdapter = TypeAdapter(Annotated[(info.annotation, *info.metadata)])  # type: ignore[arg-type]
    return functools.partial(adapter.validate_python, strict=True)


def check_decode(settings: Mapping[str, Any], flags: bool = False) -> None:
    """Refuse an unknown decoding setting, a value its field does not allow, or an n-best list longer than the beam:
    one ``NmtError`` line naming the setting (by its flag with ``flags``, else as ``decode.KEY``), its value and what
    is allowed. Settings that are absent or None are not checked."""
    def name(key: str) -> str:
        return option(key).flag if flags else f"decode.{key}"

    unknown = sorted(set(settings) - set(KEYS))
    if unknown:
        raise NmtError(f"unknown decoding setting {unknown[0]!r} (known: {', '.join(KEYS)})")
    for key in KEYS:
        if settings.get(key) is not None:
            try:
                _validator(key)(settings[key])
            except ValidationError:
                raise NmtError(f"{name(key)} {settings[key]}: must be {allowed(key)}") from None
    beam, nbest = settings.get("beam_size"), settings.get("nbest")
    if beam is not None and nbest is not None and nbest > beam and not settings.get("sample"):
        raise NmtError(f"{name('nbest')} {nbest}: must be at most the beam size ({name('beam_size')} {beam})")


def with_changes(decode: DecodeConfig, changes: Mapping[str, Any]) -> DecodeConfig:
    """``decode`` with ``changes`` (None: unchanged), checked as :func:`check_decode` checks them."""
    settings = {**decode.model_dump(), **{k: v for k, v in changes.items() if v is not None}}
    check_decode(settings)
    return DecodeConfig.model_validate(settings)
