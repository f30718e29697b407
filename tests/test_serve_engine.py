"""``nmt serve --engine ctranslate2``: a Transformer trained on the date task, exported for CTranslate2 and served
beside the same run on nmt's own engine: both APIs give nmt's greedy translations, with alignments and attention;
what CTranslate2 cannot give (per-head attention, gradients, sampling, shortlists) is refused in one line, token
scores are null; /v1/models names the engine; two worker processes serve it; --checkpoint is refused."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import torch
from fastapi.testclient import TestClient

from nmt.cli import main
from nmt.export import export_ctranslate2
from nmt.server.app import create_app
from nmt.server.service import ServerSettings, load_model
from nmt.translate import Translator
from tests.test_serve import running_server

pytest.importorskip("ctranslate2", reason="ctranslate2 is not installed (pip install 'nmt-attention[ctranslate2]')")


def sources(run_dir: Path, count: int = 8) -> list[str]:
    return (run_dir / "data" / "test.txt").read_text(encoding="utf-8").splitlines()[:count]


@pytest.fixture(scope="module")
def run(transformer_dates_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained Transformer run, with its export in ``ctranslate2/``."""
    run = tmp_path_factory.mktemp("served") / "run"
    shutil.copytree(transformer_dates_run, run)
    export_ctranslate2(run, run / "ctranslate2")
    return run


@pytest.fixture(scope="module")
def client(run: Path) -> Iterator[TestClient]:
    """The run on nmt's engine ('nmt', the default) and on CTranslate2 ('ct2'), both greedy."""
    models = [load_model("nmt", run, precision="fp32", device="cpu", beam_size=1),
              load_model("ct2", run, precision="fp32", device="cpu", engine="ctranslate2", threads=1, beam_size=1)]
    with TestClient(create_app(models, ServerSettings())) as c:
        yield c


def test_both_apis_give_nmt_translations_with_alignments(client: TestClient, run: Path) -> None:
    lines = sources(run)
    expected = Translator.from_run(run, precision="fp32", device="cpu", beam_size=1).translate(lines)
    libre = client.post("/translate", json={"q": lines, "source": "txt", "target": "iso", "model": "ct2"})
    assert libre.json() == {"translatedText": [t.text for t in expected]}
    body = {"sentences": [*lines, ""], "attention": True}
    ours = client.post("/v1/translate", json={**body, "model": "nmt"}).json()["translations"]
    theirs = client.post("/v1/translate", json={**body, "model": "ct2"}).json()["translations"]
    assert [t["text"] for t in theirs[:-1]] == [t.text for t in expected]
    for mine, other in zip(ours[:-1], theirs[:-1], strict=True):
        assert other["score"] == pytest.approx(mine["score"], abs=1e-3)
        assert other["src_pieces"] == mine["src_pieces"] and other["trg_pieces"] == mine["trg_pieces"]
        assert other["token_scores"] is None and len(mine["token_scores"]) == len(mine["trg_pieces"]) + 1
        assert other["alignment"] and "-" in other["alignment"]
        rows, cols = len(other["trg_pieces"]) + 1, len(other["src_pieces"]) + 1  # EOS on both sides
        assert len(other["attention"]) == rows and {len(r) for r in other["attention"]} == {cols}
        gap = (torch.tensor(other["attention"]) - torch.tensor(mine["attention"])).abs().max()
        assert gap < 1e-3  # the same attention: the last layer's mean over heads, the source EOS column too
        assert other["attention_heads"] is None and mine["attention_heads"] is not None
    assert theirs[-1]["text"] == "" and theirs[-1]["token_scores"] is None


def test_models_name_the_engine(client: TestClient) -> None:
    ours, theirs = client.get("/v1/models").json()
    assert (ours["engine"], theirs["engine"]) == ("nmt", "ctranslate2")
    assert (theirs["attention"], theirs["layers"], theirs["heads"]) == ("single", None, None)
    assert theirs["parameters"] == ours["parameters"] > 0
    assert (theirs["checkpoint"], theirs["precision"], theirs["decode"]["beam_size"]) == ("best.pt", "float32", 1)
    assert theirs["batching"]["requests"] >= 0 and theirs["design"] == ours["design"]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"attention": True, "gradients": True}, 400, "gradients: model ct2 runs on CTranslate2 (--engine ctranslate2), "
                                                  "which has no backward pass"),
    ({"sample": True}, 422, "sample: model ct2 runs on CTranslate2 (--engine ctranslate2), which does not sample"),
    ({"shortlist": 20}, 422, "shortlist: model ct2 runs on CTranslate2 (--engine ctranslate2), which has no "
                             "shortlists"),
    ({"heads": True}, 422, "heads: Extra inputs are not permitted"),  # per-head attention comes with attention
])
def test_what_ctranslate2_cannot_give_is_refused_in_one_line(client: TestClient, body: dict, status: int,
                                                             words: str) -> None:
    response = client.post("/v1/translate", json={"model": "ct2", "sentences": ["Jan 18, 1974"], **body})
    assert response.status_code == status
    error = response.json()["error"]
    assert words in error and "\n" not in error
    if "gradients" in body or "sample" in body:  # nmt's engine gives them
        assert client.post("/v1/translate", json={"sentences": ["Jan 18, 1974"], **body}).status_code == 200


def test_the_command_line_refuses_a_checkpoint_and_a_missing_export(run: Path, transformer_dates_run: Path) -> None:
    with pytest.raises(SystemExit, match=r"^nmt serve: error: --engine ctranslate2 runs the exported checkpoint: "
                                         r"choose it with 'nmt export --checkpoint'$"):
        main(["serve", "--engine", "ctranslate2", "-m", str(run), "--checkpoint", "x.pt"])
    with pytest.raises(SystemExit, match=r"has no CTranslate2 model: write it with 'nmt export --format ctranslate2"):
        main(["serve", "--engine", "ctranslate2", "-m", str(transformer_dates_run)])


def test_two_workers_serve_the_export(run: Path, tmp_path: Path) -> None:
    """``--workers 2``: each worker process loads its own CTranslate2 translator (on --threads 1)."""
    lines = sources(run, 4)
    expected = [t.text for t in Translator.from_run(run, precision="fp32", device="cpu", beam_size=1).translate(lines)]
    with running_server(["-m", f"ct2={run}", "--engine", "ctranslate2", "--workers", "2", "--threads", "1",
                         "--beam", "1"], tmp_path / "server.log") as (url, _):
        response = httpx2.post(f"{url}/translate", json={"q": lines, "source": "txt", "target": "iso"}, timeout=30)
        assert response.json() == {"translatedText": expected}
        assert httpx2.get(f"{url}/v1/models", timeout=5).json()[0]["engine"] == "ctranslate2"

