"""`nmt serve`: the API on a real date run through FastAPI's test client (both translation endpoints, n-best lists,
attention shapes, every class of bad request), the micro-batcher, and a real uvicorn server over a socket
(concurrent requests merged into few batches, with the translations `nmt translate` gives; draining on SIGTERM)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import torch
from fastapi.testclient import TestClient
from omegaconf import OmegaConf

from nmt import checkpoint
from nmt.cli import main
from nmt.config import DecodeConfig
from nmt.gradients import gradient_map
from nmt.lexicon import Lexicon
from nmt.models.builder import build_model
from nmt.rundir import RunDir
from nmt.server.app import create_app
from nmt.server.batcher import MicroBatcher, QueueFull
from nmt.server.service import ServerSettings, load_model
from nmt.translate import Translator
from nmt.words import word_attention
from tests.conftest import SMALL_DATES, compose_config

DATE = "Wednesday, 25 November 2026"
LIMITS = ServerSettings(max_chars=120, max_sentences=8, max_body_bytes=4000, max_beam=8, max_nbest=4, max_queue=6)
SERVER = [sys.executable, "-m", "nmt", "serve", "--device", "cpu", "--precision", "fp32", "--threads", "2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(args: list[str], log_file: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`nmt serve ARGS` on a free local port, once /health says ready: (its URL, the process)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_file, "w", encoding="utf-8") as log:
        server = subprocess.Popen([*SERVER, *args, "--port", str(port)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"nmt serve exited: {log_file.read_text(encoding='utf-8')[-2000:]}"
            assert time.monotonic() < deadline, "nmt serve was not ready within 120 s"
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield url, server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(60)


@pytest.fixture(scope="module")
def transformer_run(dates_run: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The date run's config and tokenizer with an untrained small Transformer: enough for attention shapes."""
    run, _ = dates_run
    out = tmp_path_factory.mktemp("transformer_run")
    cfg = OmegaConf.load(run / "config.yaml")
    cfg.model = compose_config([*SMALL_DATES, "model=transformer_small"]).model
    OmegaConf.save(cfg, out / "config.yaml")
    for f in run.glob("spm.*"):
        shutil.copy(f, out)
    src, trg = RunDir(out).tokenizers(cfg.tokenizer.joint)
    model = build_model(RunDir(out).config().model, len(src), len(trg))
    checkpoint.save({"model": model.state_dict()}, out / "best.pt")
    shutil.copy(run / "metrics.jsonl", out)
    return out


@pytest.fixture(scope="module")
def translator(dates_run: tuple[Path, dict]) -> Translator:
    """What the server's default model is: the date run at beam 5."""
    return Translator.from_run(dates_run[0], precision="fp32", device="cpu", beam_size=5)


@pytest.fixture(scope="module")
def client(dates_run: tuple[Path, dict], transformer_run: Path) -> Iterator[TestClient]:
    """The date run at beam 5 ('dates', the default) and the Transformer ('tf', the same pair), small limits."""
    models = [load_model("dates", dates_run[0], precision="fp32", device="cpu", beam_size=5),
              load_model("tf", transformer_run, precision="fp32", device="cpu")]
    with TestClient(create_app(models, LIMITS)) as c:
        yield c


def stats(client: TestClient | str, name: str = "dates") -> dict[str, int]:
    models = (client.get("/v1/models") if isinstance(client, TestClient) else httpx2.get(f"{client}/v1/models")).json()
    return next(m for m in models if m["name"] == name)["batching"]


def libre(client: TestClient, **body: object) -> httpx2.Response:
    return client.post("/translate", json={"source": "txt", "target": "iso", **body})


def test_health_languages_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ready", "models": ["dates", "tf"], "api_key_required": False}
    assert client.get("/languages").json() == [{"code": "txt", "name": "txt", "targets": ["iso"]},
                                               {"code": "iso", "name": "iso", "targets": []}]
    schema = client.get("/openapi.json").json()
    assert {"/translate", "/languages", "/v1/translate", "/v1/models", "/v1/limits", "/health"} <= set(schema["paths"])
    body = schema["paths"]["/v1/translate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"sentences", "beam_size", "nbest", "attention"} <= set(body["properties"])
    assert "application/x-www-form-urlencoded" in schema["paths"]["/translate"]["post"]["requestBody"]["content"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="heatmap"' in page.text
    assert client.get("/static/app.js").status_code == 200
    # Nothing the server offers loads from another host (FastAPI's /docs and /redoc would, from a CDN).
    for path in ("/docs", "/redoc"):
        assert client.get(path).json() == {"error": f"no such endpoint: {path} (see /openapi.json)"}
    for asset in ("/", "/static/app.js", "/static/style.css"):
        assert "https://" not in client.get(asset).text


def test_models_describe_runs_and_their_scores(client: TestClient, dates_run: tuple[Path, dict]) -> None:
    run, result = dates_run
    dates, tf = client.get("/v1/models").json()
    assert (dates["name"], dates["run"], dates["design"], dates["arch"]) == ("dates", str(run), "bahdanau_gru_small",
                                                                             "rnn")
    assert (dates["source"], dates["target"], dates["attention"], dates["decode"]["beam_size"]) == \
        ("txt", "iso", "single", 5)
    assert dates["parameters"] > 100_000 and dates["precision"] == "fp32"
    assert dates["scores"]["test"]["exact"] == pytest.approx(result["exact"])
    assert dates["scores"]["dev"]["exact"] >= 90
    assert set(dates["batching"]) == {"batches", "sentences", "requests", "rejected", "queued"}
    assert (tf["attention"], tf["layers"], tf["heads"], tf["design"]) == ("heads", 2, 4, "transformer_small")


def test_limits_are_the_ones_the_server_enforces(client: TestClient) -> None:
    limits = client.get("/v1/limits").json()
    assert limits == {"max_chars": 120, "max_sentences": 8, "max_body_bytes": 4000, "max_beam": 8, "max_nbest": 4,
                      "request_timeout": 60.0}
    assert limits == {name: getattr(LIMITS, name) for name in limits}
    described = client.get("/openapi.json").json()["paths"]["/v1/limits"]["get"]
    assert "max_beam" in described["description"] and described["responses"]["200"]["content"]

    def status(**body: object) -> int:
        return client.post("/v1/translate", json={"sentences": [DATE], **body}).status_code

    # At each limit a request passes; one past it is refused.
    assert (status(beam_size=limits["max_beam"]), status(beam_size=limits["max_beam"] + 1)) == (200, 422)
    assert (status(beam_size=8, nbest=limits["max_nbest"]), status(beam_size=8, nbest=limits["max_nbest"] + 1)) \
        == (200, 422)
    padded = DATE.ljust(limits["max_chars"])  # characters are counted before whitespace is tidied
    assert (status(sentences=[padded]), status(sentences=[padded + " "])) == (200, 413)
    assert (libre(client, q=padded).status_code, libre(client, q=padded + " ").status_code) == (200, 413)
    blanks = [""] * (limits["max_sentences"] - 1)  # blank sentences count, though they are not translated
    assert (status(sentences=[DATE, *blanks]), status(sentences=[DATE, *blanks, ""])) == (200, 413)
    body = json.dumps({"sentences": [DATE]})
    for size, expected in ((limits["max_body_bytes"], 200), (limits["max_body_bytes"] + 1, 413)):
        response = client.post("/v1/translate", content=body.ljust(size), headers={"Content-Type": "application/json"})
        assert response.status_code == expected


def test_libretranslate_text_list_and_lines(client: TestClient, translator: Translator) -> None:
    lines = [DATE, "Jan 18, 1974", "05/10/2010"]
    expected = [t.text for t in translator.translate(lines)]
    assert expected[0] == "2026-11-25"
    assert libre(client, q=DATE).json() == {"translatedText": expected[0]}
    assert libre(client, q=lines).json() == {"translatedText": expected}
    multi = libre(client, q=f"{lines[0]}\n\n{lines[1]}\r\n{lines[2]}").json()
    assert multi == {"translatedText": f"{expected[0]}\n\n{expected[1]}\n{expected[2]}"}


def test_libretranslate_alternatives_form_and_model_choice(client: TestClient, dates_run: tuple[Path, dict],
                                                           transformer_run: Path) -> None:
    nbest = Translator.from_run(dates_run[0], precision="fp32", device="cpu", beam_size=5, nbest=3)
    (t,) = nbest.translate([DATE])
    texts = [text for text, _ in t.nbest]
    assert libre(client, q=DATE, alternatives=2).json() == {"translatedText": texts[0], "alternatives": texts[1:]}
    assert libre(client, q=[DATE], alternatives=2).json() == {"translatedText": [texts[0]],
                                                              "alternatives": [texts[1:]]}
    form = client.post("/translate", data={"q": DATE, "source": "txt", "target": "iso", "alternatives": "2",
                                           "api_key": "unused", "format": "text"})
    assert form.json() == {"translatedText": texts[0], "alternatives": texts[1:]}
    tf = Translator.from_run(transformer_run, precision="fp32", device="cpu")
    assert libre(client, q=DATE, model="tf").json() == {"translatedText": tf.translate([DATE])[0].text}


def test_v1_translate_nbest_scores_pieces_and_alignment(client: TestClient, dates_run: tuple[Path, dict]) -> None:
    reference = Translator.from_run(dates_run[0], precision="fp32", device="cpu", beam_size=4, nbest=3, alpha=1.0)
    sentences = [DATE, "", "  jun   14th,\t2038 "]
    expected = reference.translate([DATE, "jun 14th, 2038"])
    body = client.post("/v1/translate", json={"sentences": sentences, "beam_size": 4, "nbest": 3, "alpha": 1.0}).json()
    assert body["model"] == "dates"
    assert body["settings"] == {"beam_size": 4, "alpha": 1.0, "nbest": 3, "max_len_a": 1.5, "max_len_b": 10,
                                "min_length": 0, "no_repeat_ngram": 0, "sample": False, "temperature": 1.0,
                                "top_k": 0, "top_p": 1.0, "seed": 0, "shortlist": 0}
    first, blank, last = body["translations"]
    assert blank["text"] == "" and blank["nbest"] == [] and blank["attention"] is None
    for got, want in ((first, expected[0]), (last, expected[1])):
        assert got["text"] == want.text
        assert [h["text"] for h in got["nbest"]] == [text for text, _ in want.nbest]
        assert [h["score"] for h in got["nbest"]] == pytest.approx([s for _, s in want.nbest], abs=1e-4)
        assert got["src_pieces"] == want.src_pieces and got["trg_pieces"] == want.trg_pieces
        assert len(got["token_scores"]) == len(got["trg_pieces"]) + 1
        assert sum(got["token_scores"]) == pytest.approx(got["score"], abs=1e-4)
        assert got["alignment"] == want.alignment
        assert got["attention"] is None and got["attention_heads"] is None  # not asked for
    assert first["src_words"] == ["Wednesday,", "25", "November", "2026"]
    assert first["src_word_ids"][0] == 0 and first["src_word_ids"][-1] == 3


def test_attention_shapes_rnn_and_transformer(client: TestClient) -> None:
    (rnn,) = client.post("/v1/translate", json={"sentences": [DATE], "attention": True}).json()["translations"]
    rows, cols = len(rnn["trg_pieces"]) + 1, len(rnn["src_pieces"]) + 1
    assert len(rnn["attention"]) == rows and {len(r) for r in rnn["attention"]} == {cols}
    assert all(sum(r) == pytest.approx(1, abs=1e-3) for r in rnn["attention"])
    assert rnn["attention_heads"] is None
    merged = word_attention(torch.tensor(rnn["attention"]), rnn["src_pieces"], rnn["trg_pieces"])
    assert merged.shape == (len(rnn["trg_words"]), len(rnn["src_words"]))

    body = {"model": "tf", "sentences": [DATE], "beam_size": 1, "attention": True}
    (tf,) = client.post("/v1/translate", json=body).json()["translations"]
    rows, cols = len(tf["trg_pieces"]) + 1, len(tf["src_pieces"]) + 1
    heads = tf["attention_heads"]
    assert (len(heads), {len(layer) for layer in heads}) == (2, {4})  # layers, heads
    assert {len(h) for layer in heads for h in layer} == {rows}
    assert {len(r) for layer in heads for h in layer for r in h} == {cols}
    assert len(tf["attention"]) == rows


def test_invalid_utf8_and_control_characters_read_as_nmt_translate_reads_them(
        client: TestClient, translator: Translator) -> None:
    raw = b'{"source": "txt", "target": "iso", "q": ["25 nov\xff 2026", "Jan\\t18,\\u000b1974", "x\\ud800 2020"]}'
    got = client.post("/translate", content=raw, headers={"Content-Type": "application/json"})
    assert got.status_code == 200
    expected = [t.text for t in translator.translate(["25 nov\ufffd 2026", "Jan 18, 1974", "x\ufffd 2020"])]
    assert got.json()["translatedText"] == expected


@pytest.mark.parametrize(("body", "status", "words"), [
    ('{"q": "25 nov 2026", "source": "txt"', 400, "malformed JSON"),
    ("[1, 2]", 422, "JSON object"),
    ('{"q": 5, "source": "txt", "target": "iso"}', 422, "q:"),
    ('{"q": "a", "source": "txt", "target": "iso", "alternatives": true}', 422, "alternatives"),
    ('{"q": "a", "source": "txt", "target": "iso", "alternatives": -1}', 422, "alternatives"),
    ('{"source": "txt", "target": "iso"}', 422, "q: Field required"),
    ('{"q": "a", "source": "auto", "target": "iso"}', 400, "'auto'"),
    ('{"q": "a", "source": "txt", "target": "iso", "format": "html"}', 400, "only 'text'"),
    ('{"q": "a", "source": "de", "target": "en"}', 400, "txt->iso"),
    ('{"q": "a", "source": "txt", "target": "iso", "model": "nope"}', 400, "unknown model 'nope'"),
    ('{"q": "", "source": "txt", "target": "iso"}', 400, "nothing to translate"),
    ('{"q": [], "source": "txt", "target": "iso"}', 400, "nothing to translate"),
    ('{"q": " \\n ", "source": "txt", "target": "iso"}', 400, "nothing to translate"),
    ('{"q": "a", "source": "txt", "target": "iso", "alternatives": 4}', 422, "limit of 4"),
    ('{"q": "' + "1" * 121 + '", "source": "txt", "target": "iso"}', 413, "121 characters"),
    ('{"q": "' + "a\\n" * 9 + '", "source": "txt", "target": "iso"}', 413, "10 sentences"),
])
def test_libretranslate_bad_requests(client: TestClient, body: str, status: int, words: str) -> None:
    response = client.post("/translate", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert words in response.json()["error"]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"sentences": [DATE], "beam_size": 9}, 422, "limit of 8"),
    ({"sentences": [DATE], "beam_size": 2, "nbest": 3}, 422, "cannot exceed the beam size"),
    ({"sentences": [DATE], "nbest": 5}, 422, "limit of 4"),
    ({"sentences": [DATE], "beam_size": 0}, 422, "beam_size"),
    ({"sentences": [DATE], "beam_size": "5"}, 422, "beam_size"),
    ({"sentences": [DATE], "alpha": "high"}, 422, "alpha"),
    ({"sentences": [DATE], "beam": 5}, 422, "beam: Extra inputs are not permitted"),
    ({"sentences": DATE}, 422, "sentences"),
    ({"sentences": [DATE, 7]}, 422, "sentences.1"),
    ({"sentences": []}, 400, "nothing to translate"),
    ({"sentences": ["", "   "]}, 400, "nothing to translate"),
    ({"sentences": [DATE], "model": "gpt"}, 400, "unknown model 'gpt'"),
    ({"sentences": ["7 " * 59]}, 413, "118 subwords; model dates takes at most 60"),
    ({"sentences": [DATE] * 9}, 413, "9 sentences"),
    ({"sentences": [DATE], "no_repeat_ngram": 1, "min_length": 500}, 422, "min_length"),
    ({"sentences": [DATE] * 7}, 503, "busy"),
])
def test_v1_bad_requests(client: TestClient, body: dict, status: int, words: str) -> None:
    response = client.post("/v1/translate", json=body)
    assert response.status_code == status
    assert words in response.json()["error"]
    if status == 503:
        assert response.headers["Retry-After"] == "1"


def test_body_size_content_type_and_unknown_paths(client: TestClient) -> None:
    big = json.dumps({"sentences": [DATE] * 200})
    response = client.post("/v1/translate", content=big, headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()["error"]) == (413, "the request body is over this server's "
                                                                     "limit of 4,000 bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts the bytes as they come
        yield b'{"sentences": ["'
        for _ in range(100):
            yield b"x" * 100
        yield b'"]}'

    response = client.post("/v1/translate", content=chunks(), headers={"Content-Type": "application/json"})
    assert (response.status_code, "limit of 4,000 bytes" in response.json()["error"]) == (413, True)
    response = client.post("/v1/translate", content=b"sentences=a", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415 and "application/json" in response.json()["error"]
    assert client.get("/nowhere").json() == {"error": "no such endpoint: /nowhere (see /openapi.json)"}
    assert client.get("/translate").status_code == 405
    # After every bad request above and in the other tests, the worker still translates.
    assert libre(client, q=DATE).json() == {"translatedText": "2026-11-25"}


def test_access_log_records_no_text(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    secret = "Saturday, 7 March 2043"
    with caplog.at_level(logging.DEBUG):
        assert libre(client, q=secret).status_code == 200
        assert client.post("/v1/translate", json={"sentences": [secret, "?" * 500]}).status_code == 413
    assert '"POST /translate" 200' in caplog.text and '"POST /v1/translate" 413' in caplog.text
    assert "March" not in caplog.text and "2043" not in caplog.text and "???" not in caplog.text


def test_api_keys_and_cors(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    settings = ServerSettings(api_keys=frozenset({"k-123"}), cors_origins=("https://example.org",))
    app = create_app([load_model("dates", dates_run[0], precision="fp32", device="cpu")], settings)
    with TestClient(app) as c:
        assert c.get("/health").json()["api_key_required"]
        assert libre(c, q=DATE).status_code == 403
        assert libre(c, q=DATE, api_key="wrong").json() == {"error": "invalid API key"}
        assert libre(c, q=DATE, api_key="k-123").status_code == 200
        form = {"q": DATE, "source": "txt", "target": "iso", "api_key": "k-123"}
        assert c.post("/translate", data=form).status_code == 200
        v1 = {"sentences": [DATE]}
        assert c.post("/v1/translate", json=v1).status_code == 403
        assert c.post("/v1/translate", json=v1, headers={"Authorization": "Bearer k-123"}).status_code == 200
        assert c.post("/v1/translate", json=v1, headers={"X-API-Key": "k-123"}).status_code == 200
        preflight = c.options("/v1/translate", headers={"Origin": "https://example.org",
                                                         "Access-Control-Request-Method": "POST"})
        assert preflight.headers["access-control-allow-origin"] == "https://example.org"
        other = c.options("/v1/translate", headers={"Origin": "https://evil.example",
                                                     "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers
    with TestClient(create_app([load_model("dates", dates_run[0], device="cpu")])) as c:  # both off by default
        assert libre(c, q=DATE).status_code == 200
        response = c.get("/health", headers={"Origin": "https://example.org"})
        assert "access-control-allow-origin" not in response.headers


def test_request_timeout_leaves_the_worker_alive(dates_run: tuple[Path, dict]) -> None:
    app = create_app([load_model("dates", dates_run[0], precision="fp32", device="cpu")],
                     ServerSettings(request_timeout=0.3))
    with TestClient(app) as c:
        with app.state.service.compute_lock:  # another model's batch holds the compute slot
            response = libre(c, q=DATE)
        assert response.status_code == 504 and "0.3 s" in response.json()["error"]
        assert libre(c, q=DATE).json() == {"translatedText": "2026-11-25"}


def search(beam: int, nbest: int) -> DecodeConfig:
    """A request's search settings for the date run."""
    return DecodeConfig(beam_size=beam, alpha=0.0, nbest=nbest, min_length=0, no_repeat_ngram=0, max_len_a=1.5,
                        max_len_b=10, batch_tokens=4000)


def test_batcher_merges_concurrent_requests_with_equal_settings(translator: Translator) -> None:
    lock = threading.Lock()
    batcher = MicroBatcher(translator, lock, batch_tokens=4000, max_wait=0.2, max_queue=100)
    greedy, beam = search(1, 1), search(5, 2)
    lines = ["Jan 18, 1974", "05/10/2010", "Saturday, 5 March 2011", "21st November 1959", "22 APRIL 2047"]
    lengths = [len(ids) for ids in translator.src_tok.encode(lines)]
    with lock:  # the worker waits while the requests queue up
        batcher.start()
        futures = [batcher.submit([line], [n], greedy if k % 2 else beam) for k, (line, n)
                   in enumerate(zip(lines, lengths, strict=True))]
        cancelled = batcher.submit(["12/14/91"], [6], beam)
        assert cancelled.cancel()
    outputs = [f.result(timeout=60)[0].translation for f in futures]
    assert batcher.stats() == {"batches": 2, "sentences": 5, "requests": 5, "rejected": 0, "queued": 0}
    for k, (line, out) in enumerate(zip(lines, outputs, strict=True)):
        alone = batcher.translator_for(greedy if k % 2 else beam).translate([line])[0]
        assert (out.text, out.nbest[0][0], len(out.nbest)) == (alone.text, alone.nbest[0][0], len(alone.nbest))
        assert out.score == pytest.approx(alone.score, abs=1e-4)
    with pytest.raises(QueueFull):
        batcher.submit(["a"] * 101, [1] * 101, greedy)
    batcher.stop(timeout=30)
    with pytest.raises(QueueFull, match="shutting down"):
        batcher.submit(["a"], [1], greedy)


def test_batcher_without_merging_translates_one_request_at_a_time(translator: Translator) -> None:
    lock = threading.Lock()
    batcher = MicroBatcher(translator, lock, batch_tokens=4000, max_wait=0.5, max_queue=100, merge=False)
    settings = search(1, 1)
    with lock:
        batcher.start()
        futures = [batcher.submit(["Jan 18, 1974", "05/10/2010"], [8, 8], settings) for _ in range(3)]
    start = time.monotonic()
    assert [len(f.result(timeout=60)) for f in futures] == [2, 2, 2]
    assert time.monotonic() - start < 0.5  # no waiting for company
    assert batcher.stats()["batches"] == 3
    batcher.stop(timeout=30)


def test_cli_refuses_bad_options_in_one_line(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    run = str(dates_run[0])
    cases = [
        (["-m", f"a={run}", "-m", f"a={run}"], "two models are named 'a'"),
        (["-m", run, "-m", run], f"two models are named '{dates_run[0].name}'"),
        (["-m", str(tmp_path)], "config.yaml"),
        (["-m", run, "--checkpoint", "nope.pt"], "checkpoint not found"),
        (["-m", run, "--port", "0"], "--port 0: must be positive"),
        (["-m", run, "--beam", "32"], "--beam 32 is over --max-beam 16"),
        (["-m", run, "--beam", "0"], "--beam 0"),
        (["-m", run, "--batch-wait-ms", "-1"], "--batch-wait-ms"),
        (["-m", run, "--queue-size", "10"], "--queue-size 10 is under --max-sentences 100"),
        (["-m", run, "--api-key-file", str(tmp_path / "keys.txt")], "cannot read the API key file"),
    ]
    for args, words in cases:
        with pytest.raises(SystemExit) as e:
            main(["serve", *args])
        message = str(e.value.code)
        assert message.startswith("nmt serve: error: ") and words in message and "\n" not in message, message
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(SystemExit, match=r"cannot listen on 127\.0\.0\.1"):
            main(["serve", "-m", run, "--port", str(taken.getsockname()[1])])


def test_concurrent_requests_over_a_socket_are_batched_and_match_nmt_translate(
        dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    run = dates_run[0]
    lines = (run / "data" / "test.txt").read_text(encoding="utf-8").splitlines()[:32]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = subprocess.run([sys.executable, "-m", "nmt", "translate", "-m", str(run), "--beam", "5",
                               "--device", "cpu", "--precision", "fp32", "-i", str(tmp_path / "in.txt")],
                              capture_output=True, text=True, check=True).stdout.splitlines()
    log_file = tmp_path / "server.log"
    with running_server(["-m", f"dates={run}", "--beam", "5"], log_file) as (url, _):
        before = stats(url)

        async def burst() -> list[str]:
            async with httpx2.AsyncClient(base_url=url, timeout=60) as http:
                responses = await asyncio.gather(*(http.post("/translate", json={"q": line, "source": "txt",
                                                                                 "target": "iso"})
                                                   for line in lines))
            return [r.json()["translatedText"] for r in responses]

        got = asyncio.run(burst())
        after = stats(url)
    assert got == expected
    assert after["sentences"] - before["sentences"] == 32
    assert after["batches"] - before["batches"] <= 4, after
    server_log = log_file.read_text(encoding="utf-8")
    assert server_log.count('"POST /translate" 200') == 32
    assert not any(line in server_log for line in lines)  # the access log records no text


def test_sigterm_lets_requests_in_flight_finish(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    run = dates_run[0]
    lines = (run / "data" / "test.txt").read_text(encoding="utf-8").splitlines()[:40]
    args = ["-m", f"dates={run}", "--batch-wait-ms", "0", "--max-sentences", "40"]
    log_file = tmp_path / "server.log"
    with running_server(args, log_file) as (url, server):
        answers: dict[str, httpx2.Response] = {}

        def post(key: str, body: dict) -> None:
            answers[key] = httpx2.post(f"{url}/v1/translate", json=body, timeout=120)

        long = {"sentences": lines, "beam_size": 16, "min_length": 150, "max_len_b": 200}  # seconds of work
        threads = [threading.Thread(target=post, args=("long", long)),
                   threading.Thread(target=post, args=("queued", {"sentences": lines[:5]}))]
        threads[0].start()
        time.sleep(0.2)
        threads[1].start()
        deadline = time.monotonic() + 30
        while stats(url)["queued"] == 0:  # the second request waits while the worker translates the first
            assert time.monotonic() < deadline and not answers
            time.sleep(0.01)
        server.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(120)
        assert server.wait(60) in (0, -signal.SIGTERM)  # uvicorn ends by re-raising the signal it handled
    assert answers["long"].status_code == 200 and len(answers["long"].json()["translations"]) == 40
    assert answers["queued"].status_code == 200 and len(answers["queued"].json()["translations"]) == 5
    server_log = log_file.read_text(encoding="utf-8")
    assert "Application shutdown complete" in server_log and "Traceback" not in server_log


def test_v1_translate_samples_by_seed_and_position_in_the_request(client: TestClient) -> None:
    """Sampling through the rich API: n samples per sentence, scores the model's own, the same samples for the same
    seed and position in a request whatever else the server translates with them, others for another seed."""
    hot = {"sample": True, "nbest": 3, "temperature": 3.0}

    def samples(sentences: list[str], seed: int) -> list[list[str]]:
        body = client.post("/v1/translate", json={"sentences": sentences, "seed": seed, **hot}).json()
        return [[n["text"] for n in t["nbest"]] for t in body["translations"]]

    first = samples([DATE, "the 3rd of May 1999"], 11)
    assert all(len(s) == 3 for s in first) and len({x for s in first for x in s}) > 2
    assert samples([DATE, "the 3rd of May 1999"], 11) == first
    assert samples([DATE], 11) == first[:1]  # position 0 of its request, alone
    assert samples([DATE], 12) != first[:1]


def test_v1_translate_gives_the_gradient_flow_of_each_translation(client: TestClient,
                                                                    dates_run: tuple[Path, dict]) -> None:
    """With "gradients": true, each translation's ||d log p(y_i) / d e_j|| map, the one nmt.gradients computes for
    the translation read with teacher forcing; a model quantized to int8 refuses in one line."""
    body = client.post("/v1/translate", json={"sentences": [DATE, ""], "gradients": True}).json()
    got, blank = body["translations"]
    assert blank["gradients"] is None
    reference = Translator.from_run(dates_run[0], precision="fp32", device="cpu", beam_size=5)
    (t,) = reference.translate([DATE])
    expected = gradient_map(reference.model, reference.src_tok.ids(t.src_pieces), reference.trg_tok.ids(t.trg_pieces))
    served = torch.tensor(got["gradients"])
    assert served.shape == (len(got["trg_pieces"]) + 1, len(got["src_pieces"]) + 1) == expected.shape
    torch.testing.assert_close(served, expected, rtol=1e-3, atol=1e-5)
    assert client.post("/v1/translate", json={"sentences": [DATE]}).json()["translations"][0]["gradients"] is None
    with TestClient(create_app([load_model("q", dates_run[0], quantize="int8", device="cpu")])) as quantized:
        refused = quantized.post("/v1/translate", json={"sentences": [DATE], "gradients": True})
    assert refused.status_code == 400
    assert refused.json() == {"error": "model q is quantized to int8: it has no backward pass, so no gradients "
                                       "(serve it without --quantize)"}


def test_v1_translate_searches_a_shortlist_where_the_model_has_one(dates_run: tuple[Path, dict],
                                                                   tmp_path: Path) -> None:
    """A request's shortlist needs the run's table (422 naming the command otherwise) and stays within its width;
    with the table, a sentence's output uses only its list's subwords."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "spm.joint.model", "best.pt"):
        (run / name).write_bytes((dates_run[0] / name).read_bytes())
    bare = tmp_path / "bare"
    shutil.copytree(run, bare)
    translator = Translator.from_run(run)
    vocab = len(translator.trg_tok)
    table = torch.full((vocab, 3), -1)
    frequent = torch.tensor(translator.trg_tok.ids(["-"]))
    Lexicon(table, frequent, torch.arange(vocab)).save(run / "shortlist.pt")  # each source piece may be copied
    models = [load_model("dates", run, device="cpu"), load_model("bare", bare, device="cpu")]
    with TestClient(create_app(models, LIMITS)) as c:
        none = c.post("/v1/translate", json={"model": "bare", "sentences": [DATE], "shortlist": 2})
        assert none.status_code == 422 and "model bare has no shortlist" in none.json()["error"]
        wide = c.post("/v1/translate", json={"sentences": [DATE], "shortlist": 4})
        assert wide.status_code == 422 and "over model dates's table of 3" in wide.json()["error"]
        done = c.post("/v1/translate", json={"sentences": ["25.11.2026"], "shortlist": 1, "beam_size": 3})
        assert done.status_code == 200, done.json()
        result = done.json()["translations"][0]
        allowed = set(result["src_pieces"]) | {"-"}
        assert set(result["trg_pieces"]) <= allowed and done.json()["settings"]["shortlist"] == 1
