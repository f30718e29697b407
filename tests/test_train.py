"""Training: the date task learns end to end, the run directory holds what it promises, updates accumulate
exactly, checkpoints are kept and averaged, and a killed run resumes to the same weights."""

import itertools
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.nn import functional as F

from nmt import NmtError, checkpoint, rundir
from nmt.config import CONF_DIR, RunConfig, validate
from nmt.interrupts import Interrupted, Interrupts
from nmt.loss import CrossEntropy
from nmt.optim import build_scheduler, train_update
from nmt.rundir import RunDir
from nmt.train import build_trainer, launch, session, train
from nmt.trainer import Progress, Trainer
from nmt.translate import Translator
from tests.conftest import SMALL_DATES, compose_config, run_config
from tests.helpers import TOY_TRAIN, toy_data, toy_model


def test_the_date_model_learns(dates_run: tuple[Path, dict]) -> None:
    """Three epochs of the shrunken default recipe translate held-out dates almost perfectly: test exact match
    99.4, 99.2 and 100.0, BLEU 99.59, 99.67 and 100.0 for seeds 1, 2 and 3 (Intel Xeon with AVX512-BF16, no AMX, one
    thread); the bars sit 3 points under the worst. Dev exact match after each epoch (seed 1): 0.3, 68.7, 100.0."""
    _, result = dates_run
    assert result["exact"] >= 96.0
    assert result["bleu"] >= 96.0


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_one_pass_cross_entropy_equals_torchs(smoothing: float) -> None:
    """The loss and its gradient (computed in place of the saved log-probabilities) are F.cross_entropy's."""
    torch.manual_seed(0)
    logits, target = torch.randn(9, 13, requires_grad=True), torch.randint(0, 13, (9,))
    ours = CrossEntropy.apply(logits, target, smoothing)
    (ours_grad,) = torch.autograd.grad(ours, logits)
    theirs = F.cross_entropy(logits, target, label_smoothing=smoothing, reduction="sum")
    (theirs_grad,) = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours_grad, theirs_grad)


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


def test_a_wrong_key_or_type_is_refused_before_training_naming_the_key() -> None:
    with pytest.raises(Exception, match="hidden_sise"):
        compose_config(["model.hidden_sise=5"])
    with pytest.raises(NmtError, match=r"^train\.lr='fast': input should be a valid number"):
        validate(compose_config(["train.lr=fast"]))
    with pytest.raises(NmtError, match=r"^train\.max_epochs=2\.5: input should be a valid integer"):
        validate(compose_config(["train.max_epochs=2.5"]))
    assert validate(compose_config(["train.lr=1e-3"])).train.lr == 1e-3


def test_the_cosine_schedule_warms_up_decays_to_min_lr_at_max_steps_and_resumes() -> None:
    """Linear warm-up to lr, half a cosine down to min_lr at max_steps (the midpoint halfway between them), then
    min_lr; a scheduler rebuilt from the config and the saved state goes on with the same learning rates."""
    tc = validate(compose_config(["train.schedule=cosine", "train.lr=1e-3", "train.min_lr=1e-5",
                                  "train.warmup=10", "train.max_steps=110"])).train

    def fresh() -> tuple[torch.optim.Optimizer, Any]:
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=tc.lr)
        return optimizer, build_scheduler(tc, optimizer, higher_is_better=True)

    optimizer, scheduler = fresh()
    lrs = []
    for _ in range(130):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # warm-up: (step + 1) / 10
    assert lrs[60] == pytest.approx((1e-3 + 1e-5) / 2)
    assert all(a > b for a, b in itertools.pairwise(lrs[10:111]))
    assert lrs[110:] == pytest.approx([1e-5] * 20)
    resumed_optimizer, resumed = fresh()
    optimizer, scheduler = fresh()
    for _ in range(37):
        optimizer.step()
        scheduler.step()
    resumed.load_state_dict(scheduler.state_dict())
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    for step in range(37, 80):
        assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(lrs[step])
        resumed_optimizer.step()
        resumed.step()


def test_gradient_accumulation_gives_the_update_of_one_large_batch() -> None:
    """SGD with lr 1 applies the gradient itself, so any error in the loss scaling would show."""
    train_set, trg_lengths = toy_data()
    accumulated, single = toy_model(), toy_model()
    batches = [list(range(0, 7)), list(range(7, 15)), list(range(15, 24))]
    train_update(accumulated, torch.optim.SGD(accumulated.parameters(), lr=1.0), train_set, batches, trg_lengths,
                 TOY_TRAIN)
    train_update(single, torch.optim.SGD(single.parameters(), lr=1.0), train_set, [list(range(24))], trg_lengths,
                 TOY_TRAIN)
    before = toy_model()
    for (name, a), b, p0 in zip(accumulated.named_parameters(), single.parameters(), before.parameters(),
                                strict=True):
        assert not torch.equal(a, p0), f"{name} was not updated"
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_autocast_trains_in_fp32_weights() -> None:
    train_set, trg_lengths = toy_data()
    model = toy_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    tc = TOY_TRAIN.model_copy(update={"precision": "bf16"})
    losses = [train_update(model, optimizer, train_set, [list(range(24))], trg_lengths, tc) for _ in range(30)]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses[-1][0] < 0.5 * losses[0][0]  # it learns to reproduce the 24 pairs


def test_averaged_checkpoint_is_the_mean_and_translates(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir, _ = dates_run
    paths = RunDir(run_dir).step_checkpoints()
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
            "train.threads=1", "train.device=cpu", "train.validate_every=10", "train.plot_attention=0",
            "train.patience=0", "model.emb_size=32", "model.hidden_size=32", "model.decoder_hidden_size=48",
            "model.attention_size=32", f"hydra.run.dir={run_dir}", *extra]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run trained without interruption: what an interrupted and resumed run must end with."""
    whole = tmp_path_factory.mktemp("whole")
    subprocess.run(_tiny_run(whole), check=True, capture_output=True)
    return whole


def _wait_for(proc: subprocess.Popen, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def _dev_records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(x) for x in lines if x.endswith("}") and json.loads(x)["split"] == "dev"]


def _assert_resumes_to(run: Path, whole: Path, interrupted: dict) -> None:
    resumed = subprocess.run(_tiny_run(run, "train.resume=true"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"step {interrupted['step']}" in resumed.stderr and "resuming" in resumed.stderr
    final = RunDir(whole).step_checkpoints()[-1]
    assert final.name == RunDir(run).step_checkpoints()[-1].name
    a, b = checkpoint.load(final)["model"], checkpoint.load(run / "checkpoints" / final.name)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [r["step"] for r in _dev_records(run)]
    assert steps == sorted(set(steps)) == [r["step"] for r in _dev_records(whole)]  # each validation once


def test_a_killed_run_resumes_to_the_same_weights(uninterrupted: Path, tmp_path: Path) -> None:
    """SIGKILL after a mid-epoch checkpoint, resume, and the final weights equal an uninterrupted run's,
    bit for bit (CPU, one thread, fixed seed: every random draw is restored from the checkpoint)."""
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_tiny_run(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(proc, lambda: (killed / "last.pt").exists())
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    interrupted = checkpoint.load(killed / "last.pt")["progress"]
    assert not interrupted["finished"] and interrupted["batch"] > 0  # killed mid-epoch, after a checkpoint
    _assert_resumes_to(killed, uninterrupted, interrupted)


def test_ctrl_c_saves_the_update_it_finishes_and_resumes_to_the_same_weights(uninterrupted: Path,
                                                                              tmp_path: Path) -> None:
    """SIGINT right after a validation: the run finishes the update it is in (not a validation step), saves
    last.pt there, exits 130 with one line, and its resume ends bit for bit where an uninterrupted run ends."""
    run = tmp_path / "interrupted"
    proc = subprocess.Popen(_tiny_run(run), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(proc, lambda: bool(_dev_records(run)))
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, stderr[-2000:]
    interrupted = checkpoint.load(run / "last.pt")["progress"]
    assert interrupted["step"] % 10 != 0 and not interrupted["trained"]  # between validations
    assert stderr.strip().splitlines()[-1] == (
        f"nmt train: interrupted by SIGINT at step {interrupted['step']}: saved {run / 'last.pt'}; continue with "
        f"train.resume=true")
    assert "Traceback" not in stderr
    _assert_resumes_to(run, uninterrupted, interrupted)


def test_sigterm_saves_and_exits_143_and_perplexity_is_minimised(tmp_path: Path) -> None:
    run = tmp_path / "terminated"
    proc = subprocess.Popen(_tiny_run(run, "train.metric=ppl"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    _wait_for(proc, lambda: len(_dev_records(run)) >= 3)
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143
    assert stderr.strip().splitlines()[-1].startswith("nmt train: interrupted by SIGTERM at step ")
    assert checkpoint.load(run / "last.pt")["progress"]["step"] > _dev_records(run)[-1]["step"]
    best = checkpoint.load(run / "best.pt")["progress"]
    assert best["best"] == min(r["ppl"] for r in _dev_records(run))  # lower is better for ppl (and loss)


def test_a_second_signal_aborts_at_once() -> None:
    with Interrupts() as interrupts:
        interrupts.at_once = False
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupts.received == signal.SIGINT  # the first only asks
        with pytest.raises(Interrupted) as second:
            os.kill(os.getpid(), signal.SIGINT)
    assert second.value.abort and second.value.status == 130


def test_a_checkpoint_of_an_older_nmt_resumes() -> None:
    old = {"step": 40, "epoch": 1, "batch": 3, "best": 12.5, "bad": 0, "finished": False, "elapsed": 9.5,
           "validated": 40}
    progress = Progress.from_checkpoint({"progress": old}, Path("last.pt"))
    assert (progress.step, progress.batch, progress.best, progress.trained) == (40, 3, 12.5, False)
    with pytest.raises(NmtError, match=r"last\.pt holds no training progress"):
        Progress.from_checkpoint({"model": {}}, Path("last.pt"))


def test_a_diverging_run_stops_with_one_line_and_keeps_its_checkpoints(uninterrupted: Path, tmp_path: Path) -> None:
    """Weights gone non-finite (here: a last.pt whose weights are NaN) give a non-finite gradient at the next
    update: training stops there with one line naming the step, and best.pt is not replaced."""
    run = tmp_path / "nan"
    shutil.copytree(uninterrupted, run)
    state = checkpoint.load(run / "last.pt")
    state["progress"].update(finished=False, trained=False, step=15, epoch=0, batch=15, validated=10)
    state["model"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    checkpoint.save(state, run / "last.pt")
    best = (run / "best.pt").read_bytes()
    done = subprocess.run(_tiny_run(run, "train.resume=true"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        "nmt train: error: training diverged at step 16: the gradient norm is nan")
    assert (run / "best.pt").read_bytes() == best
    assert checkpoint.load(run / "last.pt")["progress"]["step"] == 15


def test_a_non_finite_gradient_is_not_applied() -> None:
    train_set, trg_lengths = toy_data()
    model = toy_model()
    with torch.no_grad():
        model.output.bias[0] = float("inf")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _, _, norm = train_update(model, torch.optim.Adam(model.parameters()), train_set, [list(range(24))],
                              trg_lengths, TOY_TRAIN)
    assert not math.isfinite(norm)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _built(run: RunConfig, run_dir: Path) -> Trainer:
    """The trainer ``nmt train`` would build in ``run_dir``, the directory released again."""
    directory = RunDir(run_dir)
    with session(directory) as interrupts:
        return build_trainer(launch(run, directory), interrupts)


def test_the_factory_builds_every_part_and_training_adds_none(tmp_path: Path) -> None:
    """``build_trainer`` hands the trainer every part it has (none is None); running it sets no other attribute,
    and the session releases the run directory."""
    directory = RunDir(tmp_path / "run")
    cfg = run_config([*SMALL_DATES, "data.sizes.train=300", "data.sizes.dev=10", "data.sizes.test=10",
                      "train.max_steps=2", "train.validate_every=2", "train.plot_attention=0", "model.emb_size=8",
                      "model.hidden_size=8", "model.decoder_hidden_size=8", "model.attention_size=8"])
    with session(directory) as interrupts:
        trainer = build_trainer(launch(cfg, directory), interrupts)
        built = dict(vars(trainer))
        assert [name for name, part in built.items() if part is None] == []
        assert trainer.run_dir.path == directory.path and trainer.interrupts is interrupts
        result = trainer.run()
    assert set(vars(trainer)) == set(built)
    assert trainer.progress.finished and trainer.progress.step == 2 and result == trainer.progress.result
    assert directory.path.resolve() not in rundir._held


def test_subword_sampling_segments_training_pairs_anew_each_epoch_and_nothing_else(tmp_path: Path) -> None:
    """With tokenizer.sampling (BPE-dropout here), the trainer's batches of two epochs segment a sentence
    differently, always into the same text; validation and decoding use the best segmentation, with sampling on
    as with it off."""
    overrides = [*SMALL_DATES, "data.sizes.train=2000", "train.plot_attention=0"]
    plain = _built(run_config(overrides), tmp_path / "plain")
    sampled = _built(run_config([*overrides, "tokenizer.sampling=0.3"]), tmp_path / "sampled")
    epochs = [sampled.data.epoch(epoch, sampled.cfg).pairs[list(range(200))] for epoch in (0, 1)]
    best = sampled.data.train_set[list(range(200))]
    tok = sampled.data.src_tok
    changed = [i for i in range(200) if epochs[0]["src_ids"][i] != epochs[1]["src_ids"][i]]
    assert len(changed) > 20  # ISO targets have no merges to drop (digits are split): the sources show it
    for side in ("src_ids", "trg_ids"):
        assert tok.decode(epochs[0][side]) == tok.decode(epochs[1][side]) == tok.decode(best[side])
    assert sampled.validator.src_ids == plain.validator.src_ids == tok.encode(sampled.data.dev_src)
    # seeded by the epoch: a resumed run samples the same
    assert sampled.data.epoch(0, sampled.cfg).pairs[list(range(200))] == epochs[0]
    assert plain.data.epoch(1, plain.cfg).pairs[list(range(200))] == best
