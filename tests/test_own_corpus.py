"""README's "Training on your own corpus", run as written: its commands are read from the README's code block
(split the corpus, train with the recipe in recipes/own_corpus, translate the test split, score it, translate a
line), run in a temporary folder that holds the corpus and a link to recipes/, with overrides that shrink the
corpus, the model and the budget (a tiny Transformer, 10 updates: about 20 s on 2 cores). It checks that the
commands work together and leave what the walkthrough says (best.pt, one translation per line, scores), not that
the model learns: the learning tests do that."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from nmt import dates
from nmt.config import CONF_DIR, validate

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "own_corpus"
SECTION = "## Training on your own corpus"
# Appended to the README's commands: a corpus of 400 pairs, a model of 25,000 parameters, 10 updates.
TINY = {
    "split.py": ["--dev", "10", "--test", "10"],
    "train": ["tokenizer.vocab_size=100", "model.d_model=32", "model.ff_size=64", "model.num_layers=1",
              "train.max_steps=10", "train.batch_tokens=500", "train.threads=1", "train.precision=fp32",
              "train.plot_attention=0", "decode.max_len_a=0", "decode.max_len_b=12"],
    "translate": ["--threads", "2", "--precision", "fp32", "--max-len-a", "0", "--max-len-b", "12"],
}


def walkthrough() -> list[str]:
    """The shell commands of the README's own-corpus section: its first ```bash block, comments dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no section {SECTION!r}"
    block = text.split(SECTION, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split(" #", 1)[0].strip() for line in block.splitlines() if line.strip() and
            not line.startswith("#")]


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """One README command: `python` and `nmt` become this interpreter, the tiny overrides are appended, and a
    pipe from `echo` is given as stdin."""
    stdin = None
    if command.startswith("echo "):
        echoed, command = command.split("|", 1)
        stdin = shlex.split(echoed)[1] + "\n"
    words = shlex.split(command)
    program = {"python": [sys.executable], "nmt": [sys.executable, "-m", "nmt"]}[words[0]]
    extra = next((v for k, v in TINY.items() if k in (words[1], Path(words[1]).name)), [])
    done = subprocess.run([*program, *words[1:], *extra], cwd=cwd, input=stdin, capture_output=True,
                          encoding="utf-8", timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    return done


def test_the_recipe_configs_pass_the_schema() -> None:
    """The recipe's data and experiment configs compose from --config-dir and pass nmt.config's checks."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=my_corpus", "data.dir=/corpus",
                                                       f"hydra.searchpath=[file://{RECIPE}]"])
    run_config = validate(cfg, check_files=False)
    assert (run_config.data.name, run_config.data.format, run_config.model.arch) == ("my_corpus", "text",
                                                                                     "transformer")
    assert not run_config.train.test  # the walkthrough translates and scores the test split itself


def test_the_walkthrough_trains_translates_and_scores(tmp_path: Path) -> None:
    commands = walkthrough()
    assert [shlex.split(c.split("|")[-1])[:2] for c in commands] == [
        ["python", "recipes/own_corpus/split.py"], ["nmt", "train"], ["nmt", "translate"], ["nmt", "evaluate"],
        ["nmt", "translate"]]
    split, train, translate, evaluate, line = commands
    assert line.startswith("echo ")
    (tmp_path / "recipes").symlink_to(ROOT / "recipes", target_is_directory=True)
    pairs = dates.generate(400, seed=7)  # a stand-in corpus: dates, in the files of a German-English one
    for side, lang in enumerate(("de", "en")):
        (tmp_path / f"corpus.{lang}").write_text("".join(p[side] + "\n" for p in pairs), encoding="utf-8")

    run(split, tmp_path)
    data_dir = tmp_path / shlex.split(split)[shlex.split(split).index("--out") + 1]
    assert sorted(p.name for p in data_dir.iterdir()) == [f"{s}.{lang}" for s in ("dev", "test", "train")
                                                          for lang in ("de", "en")]
    assert len((data_dir / "test.de").read_text(encoding="utf-8").splitlines()) == 10

    run(train, tmp_path)
    run_dir = tmp_path / train.split("hydra.run.dir=", 1)[1].split()[0]
    assert {"best.pt", "last.pt", "config.yaml", "metrics.jsonl"} <= {p.name for p in run_dir.iterdir()}

    run(translate, tmp_path)
    hypotheses = tmp_path / shlex.split(translate)[shlex.split(translate).index("-o") + 1]
    assert len(hypotheses.read_text(encoding="utf-8").splitlines()) == 10
    scores = run(evaluate, tmp_path).stdout
    assert scores.startswith("BLEU ") and "chrF" in scores

    assert len(run(line, tmp_path).stdout.splitlines()) == 1
