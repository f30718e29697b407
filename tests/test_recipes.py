"""The Multi30k recipe script end to end on the real data (the folder $NMT_MULTI30K names), shrunk
to a small model and 150 updates at a learning rate of 3e-3 (a budget in updates, so that a slower machine trains as
much): train, average, beam-search the test set, score, plot; then the BLEU-by-length comparison script on that run.
Measured for seeds 1, 2 and 3 (Intel Xeon with AVX512-BF16, no AMX, one thread, the recipe's label smoothing 0.1):
greedy dev BLEU at updates 75 and 150: 3.23 and 8.28, 2.45 and 9.68, 4.22 and 7.92; beam-5 test BLEU 9.29, 9.65 and
10.27 (about 100 s for the script). The bars sit 3 points under the worst; chance is about 0."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nmt.download import MULTI30K_DIR
from tests.conftest import MULTI30K, needs_multi30k

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["model.emb_size=128", "model.hidden_size=128", "model.decoder_hidden_size=256", "model.attention_size=128",
         "tokenizer.vocab_size=4000", "train.max_steps=150", "train.lr=3e-3", "train.validate_every=75",
         "train.plot_attention=0", "train.threads=1", "seed=1"]


@pytest.mark.slow
@needs_multi30k
def test_multi30k_recipe_learns_german_to_english(tmp_path: Path) -> None:
    run = tmp_path / "gru"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "NMT_MULTI30K": str(MULTI30K), "OMP_NUM_THREADS": "1"}  # one core: the other runs other tests
    done = subprocess.run(["bash", str(ROOT / "recipes/multi30k/run.sh"), "gru", "de-en", str(run), *SMALL],
                          env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    dev = [float(b) for b in re.findall(r"validation at step \d+: .* BLEU ([\d.]+)", done.stderr)]
    assert len(dev) >= 2 and dev[-1] > dev[0]
    assert max(dev) >= 4.5
    dev_beam = dict(re.findall(r"^(best|averaged)\.pt, beam 5, dev \(val\.de-en\): BLEU ([\d.]+)$", done.stdout,
                               flags=re.M))
    assert dev_beam.keys() == {"best", "averaged"}
    chosen = max(dev_beam, key=lambda k: float(dev_beam[k]))
    assert f"{chosen}.pt has the better dev BLEU ({dev_beam[chosen]})" in done.stdout
    (test,) = [float(b) for b in re.findall(r"^BLEU ([\d.]+)  chrF", done.stdout, flags=re.M)]
    assert test >= 6.0  # beam 5 on test_2016_flickr, read once, from the weights dev chose
    assert re.search(r"^BLEU [\d.]+ on lowercased text  \[nrefs:1\|case:lc\|", done.stdout, flags=re.M)
    assert "TER" in done.stdout and "nrefs:1|case:mixed|eff:no|tok:13a" in done.stdout
    for name in ("best.pt", "averaged.pt", "val.best.hyp", "val.averaged.hyp", "test_2016_flickr.hyp",
                 "attention.png"):
        assert (run / name).is_file(), name
    assert not (run / "test.hyp").exists()  # training itself did not translate the test set
    assert len((run / "test_2016_flickr.hyp").read_text().splitlines()) == 1000

    compared = subprocess.run(["bash", str(ROOT / "recipes/multi30k/compare.sh"), "de-en", str(tmp_path / "length.png"),
                               str(run)], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert compared.returncode == 0, compared.stderr[-3000:]
    *table, image = compared.stdout.splitlines()
    assert image == str(tmp_path / "length.png")
    rows = [line.split("\t") for line in table]
    assert rows[0] == ["source words", "sentences", "gru"]
    assert [r[0] for r in rows[1:]] == ["<= 7", "8-9", "10-11", "12-13", "14-16", "17-20", "> 20"]
    assert sum(int(r[1]) for r in rows[1:]) == 1000
    assert all(0.0 <= float(r[2]) <= 100.0 for r in rows[1:]) and max(float(r[2]) for r in rows[1:]) >= 6.0
    assert (tmp_path / "length.png").stat().st_size > 10_000


@pytest.mark.parametrize(("script", "first"), [("run.sh", "train.de"), ("compare.sh", "test_2016_flickr.de")])
def test_without_multi30k_the_recipes_name_the_download_command(script: str, first: str, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "NMT_MULTI30K"}
    env.update(HOME=str(tmp_path), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", str(ROOT / "recipes/multi30k" / script)], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    folder = Path(MULTI30K_DIR.replace("~", str(tmp_path), 1))  # the default folder of the configs and `nmt data`
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"{script}: Multi30k not found in {folder} (no {first}): download it with "
                                        f"'nmt data multi30k' (or set NMT_MULTI30K)"]
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written
