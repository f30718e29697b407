"""Each decoding setting is defined once, as a field of nmt.config.DecodeConfig with its Option: the flags of
`nmt translate` and `nmt serve`, their checks and messages, and the search fields of a server request all follow
from the schema, so that adding a decoding setting is one edit there."""

from __future__ import annotations

import argparse
import typing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import annotated_types
import pytest

from nmt import NmtError
from nmt.cli import build_parser
from nmt.cli.options import decode_settings
from nmt.config import DecodeConfig
from nmt.decode_settings import KEYS, allowed, check_decode, choices, option, with_changes
from tests.conftest import run_config

FIELDS = DecodeConfig.model_fields


def _bound(key: str, kind: type) -> Any:
    """The field's bound of type ``kind`` (annotated_types.Ge, ...), or None."""
    return next((getattr(m, kind.__name__.lower()) for m in FIELDS[key].metadata if isinstance(m, kind)), None)


def _decoding_flags(command: str) -> dict[str, argparse.Action]:
    """The decoding flags of ``nmt COMMAND``, by setting (their dest)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    (group,) = [g for g in sub.choices[command]._action_groups if g.title == "decoding"]
    return {action.dest: action for action in group._group_actions}


@pytest.mark.parametrize("command", ["translate", "serve", "plot-attention"])
def test_every_setting_is_a_flag_of_translate_and_serve(command: str) -> None:
    flags = _decoding_flags(command)
    expected = [key for key in KEYS if not (command == "plot-attention" and key == "nbest")]  # one translation
    assert list(flags) == expected and list(KEYS) == list(FIELDS)
    for key, action in flags.items():
        assert action.option_strings == [option(key).flag], key
        assert action.default is None and action.help == option(key).help
        if choices(key):
            assert tuple(action.choices) == typing.get_args(FIELDS[key].annotation)
        elif FIELDS[key].annotation is bool:  # a switch: given, it is True
            assert action.nargs == 0 and action.const is True
        else:
            assert action.type is FIELDS[key].annotation and action.choices is None
    assert len({option(key).flag for key in KEYS}) == len(KEYS)


def test_translate_and_serve_read_the_same_flags() -> None:
    translate, serve = _decoding_flags("translate"), _decoding_flags("serve")
    assert {k: (a.option_strings, a.type, a.choices, a.help) for k, a in translate.items()} == \
           {k: (a.option_strings, a.type, a.choices, a.help) for k, a in serve.items()}


def test_flags_are_read_back_and_checked_by_their_names() -> None:
    parser = build_parser()
    args = parser.parse_args(["translate", "-m", "run", "--nbest", "3", "--alpha", "0.5", "--stop", "beams"])
    assert decode_settings(args) == {key: None for key in KEYS} | {"nbest": 3, "beam_size": 5, "alpha": 0.5,
                                                                       "stop": "beams"}
    args = parser.parse_args(["translate", "-m", "run", "--beam", "0"])
    with pytest.raises(NmtError, match=r"^--beam 0: must be an integer >= 1 \(1: greedy search\)$"):
        decode_settings(args)


NUMERIC = [k for k in KEYS if not choices(k) and FIELDS[k].annotation is not bool]


@pytest.mark.parametrize("key", NUMERIC)
def test_each_numeric_setting_is_checked_against_its_field(key: str) -> None:
    integer = FIELDS[key].annotation is int
    low, above = _bound(key, annotated_types.Ge), _bound(key, annotated_types.Gt)
    kind = "an integer" if integer else "a finite number"
    if above is not None:  # a strict lower bound: the bound itself is refused
        assert allowed(key).startswith(f"{kind} above {above:g}")
        bads: tuple = (above, above - 1)
    else:
        assert allowed(key).startswith(f"{kind} {'>=' if not option(key).most else 'from'} {low:g}")
        check_decode({key: low})
        bads = (low - 1,)
    top = _bound(key, annotated_types.Le)
    if top is not None:
        check_decode({key: top})
        bads += (top + 1,)
    for bad in (*bads, True, "2", *([2.0] if integer else [float("nan"), float("inf")])):
        with pytest.raises(NmtError) as by_flag:
            check_decode({key: bad}, flags=True)
        assert str(by_flag.value) == f"{option(key).flag} {bad}: must be {allowed(key)}"
        with pytest.raises(NmtError, match=rf"^decode\.{key} "):
            check_decode({key: bad})


def test_a_choice_and_the_beam_bound_are_checked() -> None:
    with pytest.raises(NmtError, match=r"^--stop fast: must be bound or beams$"):
        check_decode({"stop": "fast"}, flags=True)
    with pytest.raises(NmtError, match=r"^--nbest 5: must be at most the beam size \(--beam 3\)$"):
        check_decode({"beam_size": 3, "nbest": 5}, flags=True)
    check_decode({"beam_size": 1, "nbest": 5, "sample": True})  # samples, not beams: any number of them
    with pytest.raises(NmtError, match=r"^unknown decoding setting 'beam' \(known: beam_size, alpha, nbest, "):
        check_decode({"beam": 5})
    check_decode({key: None for key in KEYS})  # None: not given


def test_changes_keep_the_rest_and_are_checked() -> None:
    decode = run_config(["decode=beam5"]).decode
    changed = with_changes(decode, {"nbest": 2, "alpha": None, "max_len_b": 3})
    assert changed == decode.model_copy(update={"nbest": 2, "max_len_b": 3})
    with pytest.raises(NmtError, match=r"^decode\.nbest 6: must be at most the beam size \(decode\.beam_size 5\)$"):
        with_changes(decode, {"nbest": 6})
    assert decode.greedy().beam_size == decode.greedy().nbest == 1


def test_the_server_request_takes_the_settings_the_schema_opens_to_it() -> None:
    pytest.importorskip("fastapi")
    from nmt.server.app import create_app
    from nmt.server.schemas import SEARCH_SETTINGS
    from nmt.server.service import ServedModel

    cfg = run_config()
    app = create_app([ServedModel("m", Path("run"), SimpleNamespace(decode=cfg.decode), cfg)])  # not started
    body = app.openapi()["paths"]["/v1/translate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    fields = body["properties"]
    assert [key for key in fields if key in KEYS] == [key for key in KEYS if option(key).request] == \
           list(SEARCH_SETTINGS)
    for key in SEARCH_SETTINGS:
        (schema, none) = fields[key]["anyOf"]
        assert none == {"type": "null"} and fields[key]["description"] == option(key).help
        annotation = FIELDS[key].annotation
        assert schema["type"] == {int: "integer", bool: "boolean"}.get(annotation, "number")
        if annotation is bool:
            continue
        assert schema.get("minimum") == _bound(key, annotated_types.Ge)
        assert schema.get("exclusiveMinimum") == _bound(key, annotated_types.Gt)
        assert schema.get("maximum") == (option(key).request_max or _bound(key, annotated_types.Le))
