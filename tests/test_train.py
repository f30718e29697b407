"""Training: the date task learns end to end, the run directory holds what it promises, updates accumulate
exactly, checkpoints are kept and averaged, and a killed run resumes to the same weights."""

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from omegaconf import OmegaConf
from torch import nn

from nmt import checkpoint
from nmt.checkpoint import step_checkpoints
from nmt.model import RecurrentSeq2Seq
from nmt.train import CONF_DIR, Checkpoints, train, train_update
from nmt.translate import Translator
from tests.conftest import SMALL_DATES, compose_config


def test_the_date_model_learns(dates_run: tuple[Path, dict]) -> None:
    """A few epochs of the shrunken default recipe translate held-out dates almost perfectly."""
    _, result = dates_run
    assert result["exact"] >= 97.0
    assert result["bleu"] >= 95.0


def test_run_directory_contents(dates_run: tuple[Path, dict]) -> None:
    run_dir, result = dates_run
    for name in ("config.yaml", "spm.joint.model", "best.pt", "last.pt", "metrics.jsonl", "test.hyp",
                 "data/train.txt", "data/test.iso"):
        assert (run_dir / name).is_file(), name
    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert cfg.model.attention == "bahdanau" and cfg.train.max_epochs == 3
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    dev = [r for r in records if r["split"] == "dev"]
    assert len(dev) == 3 and all({"loss", "ppl", "bleu", "chrf", "exact", "step", "elapsed"} <= r.keys() for r in dev)
    assert 0 < dev[0]["elapsed"] < dev[1]["elapsed"] < dev[2]["elapsed"]
    assert dev[-1]["loss"] < dev[0]["loss"]
    assert any(r["split"] == "train" and r["tokens_per_s"] > 0 for r in records)
    (test,) = [r for r in records if r["split"] == "test"]
    assert test["exact"] == result["exact"]
    assert len((run_dir / "test.hyp").read_text().splitlines()) == 500
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))  # tensorboard is a dev dependency
    best = torch.load(run_dir / "best.pt", weights_only=True)
    assert best["progress"]["best"] == max(r["exact"] for r in dev)


def test_resuming_a_finished_run_does_nothing(dates_run: tuple[Path, dict], caplog: pytest.LogCaptureFixture
                                              ) -> None:
    run_dir, result = dates_run
    before = (run_dir / "best.pt").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        again = train(compose_config([*SMALL_DATES, "train.resume=true"]), run_dir)
    assert again == result
    assert (run_dir / "best.pt").stat().st_mtime_ns == before
    assert "finished already" in caplog.text


@pytest.mark.parametrize("group", ["data", "tokenizer", "model", "train", "decode"])
def test_every_config_option_composes(group: str) -> None:
    options = sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))
    assert options
    for option in options:
        cfg = compose_config([f"{group}={option}"])
        assert OmegaConf.to_container(cfg, resolve=True)[group]


def test_a_wrong_key_is_refused_before_training() -> None:
    with pytest.raises(Exception, match="hidden_sise"):
        compose_config(["model.hidden_sise=5"])
    with pytest.raises(Exception, match="max_epoch"):
        compose_config(["train.max_epoch=5"])


def test_a_value_of_the_wrong_type_is_refused_naming_the_key() -> None:
    with pytest.raises(Exception, match=r"train\.lr"):
        compose_config(["train.lr=fast"])
    with pytest.raises(Exception, match=r"train\.max_epochs"):
        compose_config(["train.max_epochs=2.5"])
    assert compose_config(["train.lr=1e-3"]).train.lr == 1e-3


def _toy_data(n: int = 24, seed: int = 0) -> tuple[Dataset, list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 9, (n, 2), generator=g).tolist()
    rows = {"src_ids": [torch.randint(4, 40, (s,), generator=g).tolist() for s, _ in lengths],
            "trg_ids": [torch.randint(4, 40, (t,), generator=g).tolist() for _, t in lengths]}
    return Dataset.from_dict(rows), [t for _, t in lengths]


def _toy_model() -> nn.Module:
    torch.manual_seed(0)
    return RecurrentSeq2Seq(40, 40, emb_size=16, hidden_size=16, decoder_hidden_size=24, attention_size=16,
                            dropout=0.0)


TOY_TRAIN = OmegaConf.create({"precision": "fp32", "label_smoothing": 0.1, "clip_grad_norm": 0.0})


def test_gradient_accumulation_gives_the_update_of_one_large_batch() -> None:
    """SGD with lr 1 applies the gradient itself, so any error in the loss scaling would show."""
    train_set, trg_lengths = _toy_data()
    accumulated, single = _toy_model(), _toy_model()
    batches = [list(range(0, 7)), list(range(7, 15)), list(range(15, 24))]
    train_update(accumulated, torch.optim.SGD(accumulated.parameters(), lr=1.0), train_set, batches, trg_lengths,
                 TOY_TRAIN)
    train_update(single, torch.optim.SGD(single.parameters(), lr=1.0), train_set, [list(range(24))], trg_lengths,
                 TOY_TRAIN)
    before = _toy_model()
    for (name, a), b, p0 in zip(accumulated.named_parameters(), single.parameters(), before.parameters(),
                                strict=True):
        assert not torch.equal(a, p0), f"{name} was not updated"
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_autocast_trains_in_fp32_weights() -> None:
    train_set, trg_lengths = _toy_data()
    model = _toy_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    tc = OmegaConf.merge(TOY_TRAIN, {"precision": "bf16"})
    losses = [train_update(model, optimizer, train_set, [list(range(24))], trg_lengths, tc) for _ in range(30)]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses[-1][0] < 0.5 * losses[0][0]  # it learns to reproduce the 24 pairs


def test_checkpoints_keep_the_last_and_the_best(tmp_path: Path) -> None:
    kept = Checkpoints(tmp_path, keep_last=2, keep_best=2, higher_is_better=True)
    for step, bleu in [(1, 10.0), (2, 30.0), (3, 25.0), (4, 5.0), (5, 7.0), (6, 6.0)]:
        kept.add({"w": torch.full((2,), float(step))}, step, bleu)
    assert [p.name for p in step_checkpoints(tmp_path)] == ["step-2.pt", "step-3.pt", "step-5.pt", "step-6.pt"]


def test_averaged_checkpoint_is_the_mean_and_translates(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir, _ = dates_run
    paths = step_checkpoints(run_dir)
    assert len(paths) == 3  # one per validation (3 epochs), train.keep_last=5
    averaged = checkpoint.average(paths)["model"]
    weights = [checkpoint.load(p)["model"] for p in paths]
    name = "decoder.attentional.weight"
    torch.testing.assert_close(averaged[name], sum(w[name] for w in weights) / 3)
    checkpoint.save({"model": averaged}, run_dir / "averaged.pt")
    translator = Translator.from_run(run_dir, "averaged.pt")
    (out,) = translator.translate(["25 November 2026"])
    assert out.text == "2026-11-25"


def _tiny_run(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nmt", "train", *SMALL_DATES, "data.sizes.train=2000", "train.max_epochs=2",
            "train.threads=1", "train.validate_every=10", "train.plot_attention=0", "train.patience=0",
            "model.emb_size=32", "model.hidden_size=32", "model.decoder_hidden_size=48", "model.attention_size=32",
            f"hydra.run.dir={run_dir}", *extra]


def test_a_killed_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """SIGKILL after a mid-epoch checkpoint, resume, and the final weights equal an uninterrupted run's,
    bit for bit (CPU, one thread, fixed seed: every random draw is restored from the checkpoint)."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_tiny_run(whole), check=True, capture_output=True)
    proc = subprocess.Popen(_tiny_run(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    interrupted = checkpoint.load(killed / "last.pt")["progress"]
    assert not interrupted["finished"] and interrupted["batch"] > 0  # killed mid-epoch, after a checkpoint
    resumed = subprocess.run(_tiny_run(killed, "train.resume=true"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"step {interrupted['step']}" in resumed.stderr and "resuming" in resumed.stderr
    final = step_checkpoints(whole)[-1]
    assert final.name == step_checkpoints(killed)[-1].name
    a, b = checkpoint.load(final)["model"], checkpoint.load(killed / "checkpoints" / final.name)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(x)["step"] for x in (killed / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["split"] == "dev"]
    assert steps == sorted(set(steps))  # the log holds each validation once
