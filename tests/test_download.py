"""`nmt data`: the download code against a local HTTP server (no network): files land verified, present ones are
kept without a request, and every failure is one line that leaves nothing a later run would take for complete; the
Multi30k configs read the folder it downloads into and name the command when the corpus is missing."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from omegaconf import open_dict

from nmt import NmtError, cli, download
from nmt.config import validate
from nmt.data import prepare
from nmt.download import MULTI30K, MULTI30K_DIR, Expected
from nmt.rundir import RunDir
from tests.conftest import MULTI30K as REAL_MULTI30K
from tests.conftest import compose_config, needs_multi30k

TEXTS = {"train.de": "ein Hund läuft\nzwei Katzen\n", "train.en": "a dog runs\ntwo cats\n",
         "val.de": "Guten Morgen!\n", "val.en": "good morning!\n"}
SMALL = dataclasses.replace(MULTI30K, base_url="http://127.0.0.1:9", files={
    name: Expected(hashlib.sha256(text.encode()).hexdigest(), text.count("\n")) for name, text in TEXTS.items()})


class Server:
    """Files over HTTP on 127.0.0.1: ``bodies[PATH]`` is (body, Content-Length), sent as is, the connection then
    closed; other paths are 404. Every request's path is recorded."""

    def __init__(self) -> None:
        self.bodies: dict[str, tuple[bytes, int]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                if self.path not in server.bodies:
                    self.send_error(404)
                    return
                body, length = server.bodies[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, texts: dict[str, str]) -> None:
        """Serve each text gzipped, as NAME.gz."""
        for name, text in texts.items():
            self.serve_bytes(name, gzip.compress(text.encode()))

    def serve_bytes(self, name: str, body: bytes, length: int | None = None) -> None:
        self.bodies[f"/{name}.gz"] = (body, len(body) if length is None else length)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    thread = threading.Thread(target=s.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
    thread.join()


def get(server: Server, folder: Path, names: list[str] | None = None, **options: object) -> list[Path]:
    return download.download(SMALL, folder, names or list(TEXTS), base_url=server.url, **options)


def one_line(error: pytest.ExceptionInfo[NmtError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def complete_files(folder: Path) -> list[str]:
    """What a later run (or a config) would take for the corpus's files: everything under its own name."""
    return sorted(p.name for p in folder.iterdir() if p.name in TEXTS) if folder.exists() else []


def test_the_command_downloads_verified_files_and_prints_the_folder(server: Server, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    server.serve(TEXTS)
    monkeypatch.setitem(download.CORPORA, "multi30k", SMALL)
    folder = tmp_path / "data" / "multi30k"
    with caplog.at_level(logging.INFO, logger="nmt.download"):
        cli.main(["data", "multi30k", "--dir", str(folder), "--mirror", server.url + "/"])
    assert capsys.readouterr().out == f"{folder}\n"
    assert sorted(p.name for p in folder.iterdir()) == sorted(TEXTS)  # no temporary file left
    for name, text in TEXTS.items():
        assert (folder / name).read_text(encoding="utf-8") == text
    assert sorted(server.requests) == sorted(f"/{name}.gz" for name in TEXTS)
    per_file = [r.getMessage() for r in caplog.records if "SHA-256 verified" in r.getMessage()]
    assert len(per_file) == len(TEXTS) and all(server.url in line for line in per_file)


def test_languages_and_splits_choose_the_files(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    server.serve(TEXTS)
    monkeypatch.setitem(download.CORPORA, "multi30k", SMALL)
    cli.main(["data", "multi30k", "--dir", str(tmp_path), "--mirror", server.url, "--languages", "en", "--splits",
              "val"])
    assert [p.name for p in tmp_path.iterdir()] == ["val.en"] and server.requests == ["/val.en.gz"]
    for option, value, message in (("--languages", "xx", "--languages xx: Multi30k has de, en"),
                                   ("--splits", "test", "--splits test: Multi30k has train, val")):
        with pytest.raises(SystemExit) as refused:
            cli.main(["data", "multi30k", "--dir", str(tmp_path), option, value])
        assert refused.value.code == f"nmt data: error: {message}"
    assert MULTI30K.select(["test_2017_mscoco"], ["en"]) == ["test_2017_mscoco.en"]
    assert len(MULTI30K.select()) == 22 and "test_2017_flickr.cs" not in MULTI30K.files


def test_present_verified_files_are_kept_without_a_request(server: Server, tmp_path: Path) -> None:
    server.serve(TEXTS)
    assert len(get(server, tmp_path)) == len(TEXTS)
    server.requests.clear()
    assert get(server, tmp_path) == [] and server.requests == []
    (tmp_path / "val.en").unlink()  # as an interrupted run leaves it: the others are kept, the missing one fetched
    assert get(server, tmp_path) == [tmp_path / "val.en"] and server.requests == ["/val.en.gz"]


def test_a_wrong_checksum_is_one_line_and_saves_nothing(server: Server, tmp_path: Path) -> None:
    server.serve({**TEXTS, "train.de": "ein Hund läuft\nzwei Hunde\n"})
    with pytest.raises(NmtError) as refused:
        get(server, tmp_path)
    message = one_line(refused)
    assert message.startswith(f"train.de from {server.url}/train.de.gz is not the file expected: SHA-256 ")
    assert message.endswith("(2 lines); not saved")
    assert list(tmp_path.iterdir()) == []
    server.serve(TEXTS)
    assert len(get(server, tmp_path)) == len(TEXTS)  # a later run starts the file again


def test_a_transfer_shorter_than_its_content_length_is_one_line(server: Server, tmp_path: Path) -> None:
    body = gzip.compress(TEXTS["train.de"].encode())
    server.serve_bytes("train.de", body[:20], length=len(body))  # the server closes after 20 bytes
    with pytest.raises(NmtError) as broken:
        get(server, tmp_path, ["train.de"])
    assert one_line(broken) == (f"the download of train.de from {server.url}/train.de.gz ended after 20 of "
                                f"{len(body)} bytes")
    assert list(tmp_path.iterdir()) == []
    server.serve_bytes("train.de", body, length=len(body) + 100)  # all the data, fewer bytes than declared
    with pytest.raises(NmtError, match="ended after"):
        get(server, tmp_path, ["train.de"])
    assert list(tmp_path.iterdir()) == []


def test_a_gzip_stream_cut_short_is_one_line(server: Server, tmp_path: Path) -> None:
    body = gzip.compress(TEXTS["train.de"].encode())
    server.serve_bytes("train.de", body[:-6])  # the Content-Length of what is sent: only gzip can tell
    with pytest.raises(NmtError) as broken:
        get(server, tmp_path, ["train.de"])
    assert one_line(broken).startswith(f"the gzip stream of train.de from {server.url}/train.de.gz ends early")
    assert list(tmp_path.iterdir()) == []
    server.serve_bytes("train.de", TEXTS["train.de"].encode())  # not gzipped at all
    with pytest.raises(NmtError) as broken:
        get(server, tmp_path, ["train.de"])
    assert one_line(broken).startswith(f"train.de from {server.url}/train.de.gz is not gzip data")
    assert list(tmp_path.iterdir()) == []


def test_an_http_error_is_one_line(server: Server, tmp_path: Path) -> None:
    with pytest.raises(NmtError) as missing:
        get(server, tmp_path, ["val.de"])
    assert one_line(missing) == f"cannot download val.de from {server.url}/val.de.gz: HTTP 404 Not Found"
    assert complete_files(tmp_path) == []


def test_an_unreachable_source_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    monkeypatch.setitem(download.CORPORA, "multi30k", SMALL)
    with pytest.raises(SystemExit) as refused:
        cli.main(["data", "multi30k", "--dir", str(tmp_path / "m30k"), "--mirror", f"http://127.0.0.1:{port}"])
    assert refused.value.code == (f"nmt data: error: cannot download train.de from "
                                  f"http://127.0.0.1:{port}/train.de.gz: Connection refused")
    assert complete_files(tmp_path / "m30k") == []
    with pytest.raises(NmtError, match=r"^ftp://example.org: not an http://, https:// or file:// URL$"):
        download.download(SMALL, tmp_path, ["val.de"], base_url="ftp://example.org")


def test_a_silent_server_times_out_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as listening:  # accepts connections (the kernel's backlog) and never answers
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        with pytest.raises(NmtError) as silent:
            download.download(SMALL, tmp_path, ["val.de"], base_url=url, timeout=0.3)
    assert one_line(silent) == f"cannot download val.de from {url}/val.de.gz: no answer within 0.3 s"
    assert list(tmp_path.iterdir()) == []


def test_a_present_file_with_other_content_is_refused_unless_forced(server: Server, tmp_path: Path) -> None:
    server.serve(TEXTS)
    (tmp_path / "val.en").write_text("my own translation\n", encoding="utf-8")
    with pytest.raises(NmtError) as refused:
        get(server, tmp_path)
    assert one_line(refused) == (f"{tmp_path / 'val.en'} is not Multi30k's val.en: its SHA-256 differs; left as it is "
                                 f"(move it away, or replace it with --force)")
    assert server.requests == [] and [p.name for p in tmp_path.iterdir()] == ["val.en"]
    assert (tmp_path / "val.en").read_text(encoding="utf-8") == "my own translation\n"
    get(server, tmp_path, force=True)
    assert (tmp_path / "val.en").read_text(encoding="utf-8") == TEXTS["val.en"]


def test_the_multi30k_configs_read_the_download_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NMT_MULTI30K", raising=False)
    for pair in ("deen", "ende", "fren"):
        data = compose_config([f"data=multi30k_{pair}"]).data
        assert data.dir == MULTI30K_DIR and data.download == "multi30k"
    assert MULTI30K.folder() == Path(MULTI30K_DIR).expanduser() != Path.home() / ".cache" / "nmt"  # not the cache
    monkeypatch.setenv("NMT_MULTI30K", str(tmp_path))
    assert compose_config(["data=multi30k_deen"]).data.dir == str(tmp_path) and MULTI30K.folder() == tmp_path


def test_a_missing_corpus_names_the_download_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NMT_MULTI30K", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = compose_config(["data=multi30k_deen"])
    line = (f"Multi30k not found in {tmp_path}/.cache/nmt/data/multi30k: download it with 'nmt data multi30k' "
            f"(or set NMT_MULTI30K or data.dir=DIR)")
    with pytest.raises(NmtError) as checked:
        validate(cfg)  # before training starts
    assert one_line(checked) == line
    with pytest.raises(NmtError) as read:
        prepare(validate(cfg, check_files=False).data, tmp_path / "run")  # where the training reads the folder
    assert one_line(read) == line
    folder = tmp_path / "m30k"  # a copy without French
    folder.mkdir()
    for name in TEXTS:
        (folder / name).write_text(TEXTS[name], encoding="utf-8")
    with pytest.raises(NmtError) as partial:
        validate(compose_config(["data=multi30k_fren", f"data.dir={folder}"]))
    assert one_line(partial) == (f"Multi30k not found in {folder} (no train.fr; data.splits.train='train'): download "
                                 f"it with 'nmt data multi30k --dir {folder}' (or set NMT_MULTI30K or data.dir=DIR)")
    with pytest.raises(NmtError, match=r"^data.download='elsewhere': choose multi30k"):
        validate(compose_config(["data=multi30k_deen", "data.download=elsewhere"]))



def test_a_run_saved_before_the_download_key_resumes_with_it(tmp_path: Path) -> None:
    cfg = compose_config(["data=multi30k_deen", f"data.dir={tmp_path}"])
    saved = cfg.copy()
    with open_dict(saved):
        del saved.data["download"]
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.save_config(validate(saved, check_files=False))
    assert run.resume_config(validate(cfg, check_files=False)).data.download == "multi30k"


@needs_multi30k
def test_the_real_multi30k_verifies_against_the_table(server: Server, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    assert REAL_MULTI30K is not None
    names = MULTI30K.select(["train", "val", "test_2016_flickr"], ["de", "en"])
    for name in names:
        server.serve_bytes(name, gzip.compress((REAL_MULTI30K / name).read_bytes(), compresslevel=1))
    cli.main(["data", "multi30k", "--dir", str(tmp_path), "--languages", "de", "en", "--splits", "train", "val",
              "test_2016_flickr", "--mirror", server.url])
    assert capsys.readouterr().out == f"{tmp_path}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names) and len(names) == 6
    for name in names:
        assert (tmp_path / name).read_bytes() == (REAL_MULTI30K / name).read_bytes()
        assert len((tmp_path / name).read_bytes().splitlines()) == MULTI30K.files[name].lines
