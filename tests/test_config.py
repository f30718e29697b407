"""The config schemas (nmt.config): every key of every option in conf/ is checked for its type and range, with one
line naming the key; `nmt train` refuses a bad config or a bad override before it creates anything."""

import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from omegaconf import DictConfig, OmegaConf

from nmt import NmtError, cli
from nmt.config import CONF_DIR, RunConfig, validate
from tests.conftest import compose_config

GROUPS = ("data", "tokenizer", "model", "train", "decode")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def _leaves(node: Any, prefix: str) -> list[str]:
    if isinstance(node, DictConfig):
        return [leaf for key in node for leaf in _leaves(node._get_node(key), f"{prefix}.{key}")]
    return [prefix]


def _field(cfg: DictConfig, key: str) -> Any:
    """The pydantic FieldInfo of a dotted key (``model.hidden_size``), following nested models and dicts."""
    group, *rest = key.split(".")
    model = RunConfig.model_fields[group].annotation
    if group == "model":
        model = next(m for m in typing.get_args(model) if m.model_fields["arch"].annotation
                     == typing.Literal[cfg.model.arch])
    info = None
    for part in rest:
        if info is not None and typing.get_origin(info.annotation) is dict:
            return info  # a dict's entries share its value type
        info = model.model_fields[part]
        inner = [a for a in (info.annotation, *typing.get_args(info.annotation)) if hasattr(a, "model_fields")]
        model = inner[0] if inner else None
    return info


def _wrong_values(info: Any) -> list[Any]:
    """A value of the wrong type for the field, and one out of its range where it has one."""
    annotation = info.annotation
    base = [a for a in (annotation, *typing.get_args(annotation)) if a is not type(None)]
    if typing.get_origin(annotation) is dict:
        return [{"train": "many"}]
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        high = next(m.lt for m in typing.get_args(item)[1].metadata if isinstance(m, annotated_types.Lt))
        return ["abc", [high, high]]
    if bool in base:
        return ["maybe"]
    if int in base or float in base:
        bad: list[Any] = ["abc"]
        for m in info.metadata:
            for attr, step in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
                if hasattr(m, attr):
                    bad.append(getattr(m, attr) + step)
        return bad
    return [[1, 2]]  # strings and choices: a list is no string


CASES = [(group, option) for group in GROUPS for option in _options(group)]


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_key_of_every_option_refuses_a_wrong_type_and_range(group: str, option: str) -> None:
    cfg = compose_config([f"{group}={option}"])
    validate(cfg, check_files=False)  # the option itself is valid
    checked = 0
    for key in _leaves(cfg[group], group):
        if key == "data.cache_dir" or key.startswith("data.sizes."):
            continue  # cache_dir is any path; sizes are checked as a dict below
        for value in _wrong_values(_field(cfg, key)):
            bad = cfg.copy()
            OmegaConf.update(bad, key, value, merge=False)
            with pytest.raises(NmtError) as refused:
                validate(bad, check_files=False)
            message = str(refused.value)
            assert "\n" not in message and key in message, (key, value, message)
            checked += 1
    assert checked >= len(_leaves(cfg[group], group)) - 3


def test_errors_across_groups_name_both_keys() -> None:
    with pytest.raises(NmtError, match=r"model\.shared_embeddings needs one vocabulary .* tokenizer\.joint=true"):
        validate(compose_config(["model=transformer", "tokenizer.joint=false"]), check_files=False)
    with pytest.raises(NmtError, match=r"model\.tie_embeddings needs model\.emb_size \(64\) == "):
        validate(compose_config(["model.tie_embeddings=true"]), check_files=False)
    with pytest.raises(NmtError, match=r"decode\.nbest \(3\) cannot exceed decode\.beam_size \(1\)"):
        validate(compose_config(["decode.nbest=3"]), check_files=False)
    with pytest.raises(NmtError, match=r"^foo: unknown key$"):
        validate(compose_config(["+foo=1"]), check_files=False)


def test_the_data_files_of_every_split_must_exist(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for lang in ("de", "en"):
            (tmp_path / f"{split}.{lang}").write_text("a\n")
    with pytest.raises(NmtError, match=rf"Multi30k not found in {tmp_path} \(no test_2016_flickr.de; "
                                       r"data.splits.test='test_2016_flickr'\): download it with 'nmt data multi30k"):
        validate(compose_config(["data=multi30k_deen", f"data.dir={tmp_path}"]))
    with pytest.raises(NmtError, match=rf"data file not found: {tmp_path}/test_2016_flickr.de "
                                       r"\(data.splits.test='test_2016_flickr'; set data.dir=DIR\)"):
        validate(compose_config(["data=multi30k_deen", f"data.dir={tmp_path}", "data.download=null"]))
    with pytest.raises(NmtError, match=r"data directory not found: .*nowhere \(set data.dir=DIR\)"):
        validate(compose_config(["data=multi30k_deen", f"data.dir={tmp_path / 'nowhere'}", "data.download=null"]))


def _refuse(args: list[str], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main(["train", *args])
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


BAD_OVERRIDES = [
    (["model.hidden_size=abc"], "nmt train: error: model.hidden_size='abc': input should be a valid integer"),
    (["model.cell=foo"], "nmt train: error: model.cell='foo': input should be 'rnn', 'gru' or 'lstm'"),
    (["model.dropout=1.5"], "nmt train: error: model.dropout=1.5: input should be less than 1"),
    (["tokenizer.vocab_size=0"], "nmt train: error: tokenizer.vocab_size=0: input should be greater than or equal"),
    (["data.max_length=abc"], "nmt train: error: data.max_length='abc'"),
    (["train.accumulate=0"], "nmt train: error: train.accumulate=0"),
    (["train.device=tpu"], "nmt train: error: train.device='tpu': choose auto, cpu, cuda or cuda:N"),
    (["train.log_every=0"], "nmt train: error: train.log_every=0"),
    (["decode.beam_size=abc"], "nmt train: error: decode.beam_size='abc'"),
    (["decode.beam_size=0"], "nmt train: error: decode.beam_size=0"),
    (["train.metric=accuracy"], "nmt train: error: train.metric='accuracy': input should be 'bleu', 'chrf'"),
    (["train=schema"], "nmt train: error: train=schema: no such option (choose dates, default)"),
    (["model=foo"], "nmt train: error: model=foo: no such option (choose bahdanau_gru, "),
    (["train.lr=["], "nmt train: error: cannot parse the override 'train.lr=['"),
    (["model.hidden_sise=5"], "nmt train: error: Could not override 'model.hidden_sise'"),
    (["train.resume=true", "train.start_over=true"], "nmt train: error: train.resume and train.start_over exclude"),
    (["train.schedule=cosine"], "nmt train: error: train.schedule=cosine decays the learning rate until "
     "train.max_steps, which must be set above train.warmup (4000); it is 0"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_OVERRIDES, ids=[" ".join(o) for o, _ in BAD_OVERRIDES])
def test_a_bad_override_is_one_line_before_anything_is_created(overrides: list[str], message: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert _refuse([f"hydra.run.dir={run}", *overrides], capsys).startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_multi30k_says_how_to_point_at_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = _refuse(["experiment=multi30k_gru", f"data.dir={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'r'}"],
                  capsys)
    assert err == f"nmt train: error: Multi30k not found in {tmp_path / 'nowhere'}: download it with 'nmt data " \
                  f"multi30k --dir {tmp_path / 'nowhere'}' (or set NMT_MULTI30K or data.dir=DIR)"
    assert not (tmp_path / "r").exists()


def test_end_to_end_a_bad_value_leaves_no_directory(tmp_path: Path) -> None:
    """The real command: Hydra would create the run directory, train.log and .hydra/ before the task runs."""
    done = subprocess.run([sys.executable, "-m", "nmt", "train", "model.hidden_size=abc",
                           f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "model.hidden_size" in done.stderr
    assert list(tmp_path.iterdir()) == []
