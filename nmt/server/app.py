"""``nmt serve``: trained runs behind an HTTP API (FastAPI on uvicorn), with micro-batching across requests and a
web page.

    from nmt.server.service import ServerSettings, load_model
    from nmt.server.app import create_app
    app = create_app([load_model("dates", "runs/dates", beam_size=5)], ServerSettings())
    # uvicorn.run(app), or fastapi.testclient.TestClient(app)

Endpoints: ``POST /translate`` and ``GET /languages`` (LibreTranslate's API), ``POST /v1/translate`` (everything
nmt knows about a translation), ``GET /v1/models``, ``GET /v1/limits`` (the limits below, as numbers),
``GET /health``, ``GET /openapi.json``, and the page at ``/`` (``nmt/server/static/``). Errors are JSON
``{"error": "..."}``: malformed JSON 400, wrong types 422, beam size or n-best over the limit 422, unknown model or
language pair 400, empty input 400, too large 413 (the body, checked before it is parsed; characters per sentence;
sentences per request; subwords per sentence), wrong or missing API key 403, full queue 503 with Retry-After,
timeout 504; 500 only for a fault of the server. Invalid UTF-8 in a body becomes U+FFFD, as in ``nmt translate``.
The access log records no text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nmt import NmtError, __version__
from nmt.server.schemas import (
    SEARCH_SETTINGS,
    ErrorBody,
    Health,
    Language,
    LibreTranslateRequest,
    LibreTranslateResponse,
    Limits,
    ModelInfo,
    TranslateRequest,
    TranslateResponse,
)
from nmt.server.service import ApiError, ServedModel, ServerSettings, Service, clean, sentence_result

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)
access_log = logging.getLogger("nmt.server.app.access")

STATIC_DIR = Path(__file__).parent / "static"
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 403, 413, 415, 422, 503, 504)}


class AccessLog:
    """ASGI middleware: one log line per request (client, method, path without the query, status, time), never
    its text."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            client = scope.get("client")
            access_log.info('%s "%s %s" %d %.1f ms', client[0] if client else "-", scope["method"], scope["path"],
                            status, 1000 * (time.perf_counter() - start))


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before it is parsed: at once when its
    Content-Length says so, else as soon as the bytes received pass the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is over this server's limit of {self.limit:,} bytes"
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            await _error(413, message)(scope, receive, send)
            return
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.limit:
                    raise ApiError(413, message)
            return event

        await self.app(scope, receive_limited, send)


class WorkerHeaders:
    """ASGI middleware: every response names the worker process that answered it (``X-NMT-Worker``: its index,
    ``X-NMT-PID``: its process id)."""

    def __init__(self, app: ASGIApp, worker: int) -> None:
        self.app = app
        self.headers = [(b"x-nmt-worker", str(worker).encode()), (b"x-nmt-pid", str(os.getpid()).encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_named)


def _request_body(model: type[BaseModel], form: bool) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of an endpoint that parses its body itself (to read invalid UTF-8 as nmt does)."""
    schema = model.model_json_schema()
    content = {"application/json": {"schema": schema}}
    if form:
        content |= {"application/x-www-form-urlencoded": {"schema": schema}, "multipart/form-data": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}


async def parse_body(request: Request, model: type[BaseModel], form: bool) -> Any:
    """The request body as ``model``: JSON (types checked strictly) or, with ``form``, form fields (as text)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if form and kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        fields = await request.form()
        data: Any = {k: (fields.getlist(k) if k == "q" and len(fields.getlist(k)) > 1 else v)
                     for k, v in fields.items()}
        strict = False
    elif kind == "application/json" or kind.endswith("+json"):
        raw = await request.body()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            log.warning("%s: invalid UTF-8 in the request body, undecodable bytes replaced by U+FFFD", request.url.path)
            text = raw.decode("utf-8", errors="replace")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ApiError(400, f"malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
        except RecursionError:
            raise ApiError(400, "malformed JSON: nested too deeply") from None
        strict = True
    else:
        kinds = "application/json" + (", application/x-www-form-urlencoded or multipart/form-data" if form else "")
        raise ApiError(415, f"unsupported content type {kind or '(none)'!r}: send {kinds}")
    if not isinstance(data, dict):
        found = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
        raise ApiError(422, f"the body must be a JSON object, not {found.get(type(data), 'null')}")
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as e:
        raise ApiError(422, validation_message(e)) from None


def validation_message(error: ValidationError) -> str:
    """Pydantic's errors in one line: 'beam_size: Input should be a valid integer; q: Field required'."""
    parts = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"] if p not in ("str", "list[str]"))  # the members of q's union
        parts.append(f"{where or 'body'}: {e['msg']}")
    return "; ".join(dict.fromkeys(parts))


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(models: list[ServedModel], settings: ServerSettings | None = None,
               worker: int | None = None) -> FastAPI:
    """The ASGI app serving ``models`` (the first is the default); workers start and models warm up in its
    lifespan (``with TestClient(app)``, or uvicorn). ``worker``: this process's index among several serving one
    port, which ``/health`` and a header of every response give with the process id (None: the only one)."""
    settings = settings or ServerSettings()
    service = Service(models, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(service.start)
        yield
        await asyncio.to_thread(service.stop)

    # No /docs or /redoc: FastAPI serves those pages from a CDN, which offline machines cannot reach; the schema
    # itself is /openapi.json.
    app = FastAPI(title="nmt", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Neural machine translation with attention: LibreTranslate's API, and nmt's own "
                              "with n-best lists, token scores, pieces, alignments and attention.")
    app.state.service = service
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.cors_origins:  # outside the body limit, so that a page elsewhere can read a 413 too
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "Authorization", "X-API-Key"])
    app.add_middleware(AccessLog)
    if worker is not None:
        app.add_middleware(WorkerHeaders, worker=worker)
    _error_handlers(app)
    _reading_routes(app, service, settings, worker)
    _translation_routes(app, service)
    return app


def _error_handlers(app: FastAPI) -> None:
    """Every error as the API's one JSON shape: a domain error (ApiError), an HTTP one, and a fault."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return _error(e.status, e.message, e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        message = str(e.detail)
        if e.status_code == 404:
            message = f"no such endpoint: {request.url.path} (see /openapi.json)"
        return _error(e.status_code, message, getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def server_fault(request: Request, e: Exception) -> JSONResponse:  # uvicorn logs the traceback
        return _error(500, "internal server error (the server's log has the details)")


def _reading_routes(app: FastAPI, service: Service, settings: ServerSettings, worker: int | None) -> None:
    """The page and what describes the server: health, languages, models, limits."""

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health() -> JSONResponse:
        """'ready' (200) once the models are warmed up, else 'starting' or 'draining' (503); with several
        worker processes, the index and process id of the one that answered."""
        body = Health(status=service.status, models=list(service.models), api_key_required=bool(settings.api_keys),
                      worker=worker, pid=os.getpid() if worker is not None else None)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if service.status == "ready" else 503)

    @app.get("/languages", response_model=list[Language])
    async def languages() -> list[Language]:
        """LibreTranslate's list: every language code with the codes it translates to."""
        return service.languages()

    @app.get("/v1/models", response_model=list[ModelInfo])
    async def list_models() -> list[ModelInfo]:
        """The served models (the first is the default), with their run's scores and batching counters."""
        return [service.model_info(m) for m in service.models.values()]

    @app.get("/v1/limits", response_model=Limits)
    async def limits() -> Limits:
        """The most a translation request may ask for: characters per sentence (``max_chars``), sentences per
        request (``max_sentences``), bytes of the body (``max_body_bytes``), beam size (``max_beam``), hypotheses
        per sentence (``max_nbest``), and the seconds it may wait (``request_timeout``). These are the values the
        server checks requests against (its ``--max-*`` and ``--request-timeout`` options): a request within them
        passes those checks, one past any of them is refused (413 or 422; 504 past the timeout). The page at
        ``/`` reads them to bound its inputs."""
        return service.limits()


def _translation_routes(app: FastAPI, service: Service) -> None:
    """LibreTranslate's ``/translate`` and nmt's own ``/v1/translate``."""

    @app.post("/translate", response_model=LibreTranslateResponse, response_model_exclude_none=True,
              responses=ERRORS, openapi_extra=_request_body(LibreTranslateRequest, form=True))
    async def translate_libre(request: Request) -> LibreTranslateResponse:
        """LibreTranslate's translation endpoint: a text or a list of texts, each translated line by line."""
        body: LibreTranslateRequest = await parse_body(request, LibreTranslateRequest, form=True)
        service.check_key(body.api_key, request.headers)
        if body.format != "text":
            raise ApiError(400, f"format {body.format!r} is not supported: only 'text'")
        m = service.model_for_pair(body.source, body.target, body.model)
        texts = [body.q] if isinstance(body.q, str) else body.q
        if not texts:
            raise ApiError(400, "nothing to translate: q is empty")
        lines = [text.split("\n") for text in texts]
        flat = [line.rstrip("\r") for text_lines in lines for line in text_lines]
        service.check_sentences(flat)
        search = service.search_settings(m, nbest=body.alternatives + 1 if body.alternatives else None)
        outputs = await service.translate(m, [clean(line) for line in flat], search)
        return _libre_response(body, lines, outputs)

    @app.post("/v1/translate", response_model=TranslateResponse, responses=ERRORS,
              openapi_extra=_request_body(TranslateRequest, form=False))
    async def translate_v1(request: Request) -> TranslateResponse:
        """Sentences with search settings -> translations, n-best lists, token scores, pieces, words, alignments,
        and (with ``attention``) attention matrices."""
        body: Any = await parse_body(request, TranslateRequest, form=False)  # a model derived at import time
        service.check_key(body.api_key, request.headers)
        m = service.model(body.model)
        if not body.sentences:
            raise ApiError(400, "nothing to translate: sentences is empty")
        service.check_sentences(body.sentences)
        search = service.search_settings(m, **body.model_dump(include=set(SEARCH_SETTINGS)))
        heads = body.attention and m.attention == "heads"
        outputs = await service.translate(m, [clean(s) for s in body.sentences], search, heads, body.gradients)
        return TranslateResponse(model=m.name, settings=search.model_dump(include=set(SEARCH_SETTINGS)),
                                 translations=[sentence_result(o, body.attention, m.engine == "nmt")
                                               for o in outputs])


def _libre_response(body: LibreTranslateRequest, lines: list[list[str]], outputs: list) -> LibreTranslateResponse:
    """The translations of each text's lines joined back into texts, with the alternatives (the n-best lists'
    other entries, line by line) when asked for."""
    translated: list[str] = []
    alternatives: list[list[str]] = []
    k = 0
    for text_lines in lines:
        mine = outputs[k:k + len(text_lines)]
        k += len(text_lines)
        nbests = [[x for x, _ in o.translation.nbest] if o else [""] for o in mine]
        translated.append("\n".join(n[0] for n in nbests))
        alternatives.append(["\n".join(n[a] if a < len(n) else n[0] for n in nbests)
                             for a in range(1, max(map(len, nbests)))])
    if isinstance(body.q, str):
        return LibreTranslateResponse(translatedText=translated[0],
                                      alternatives=alternatives[0] if body.alternatives else None)
    return LibreTranslateResponse(translatedText=translated, alternatives=alternatives if body.alternatives else None)


def uvicorn_config(app: FastAPI, graceful_timeout: float, host: str = "127.0.0.1", port: int = 8000) -> uvicorn.Config:
    """uvicorn's settings for ``app``: on SIGINT or SIGTERM, in-flight requests finish first (for at most
    ``graceful_timeout`` seconds), then the workers stop. Logging stays as configured (stderr); uvicorn's own
    access log is off (``AccessLog`` writes one that records no text)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on",
                          timeout_graceful_shutdown=max(1, round(graceful_timeout)))


def serve(app: FastAPI, host: str, port: int, graceful_timeout: float) -> None:
    """Run ``app`` on uvicorn at ``host:port`` until SIGINT or SIGTERM (see ``uvicorn_config``)."""
    import uvicorn

    uvicorn.Server(uvicorn_config(app, graceful_timeout, host, port)).run()


def read_api_keys(path: Path) -> frozenset[str]:
    """The API keys of a file: one per line; blank lines and lines starting with '#' are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise NmtError(f"cannot read the API key file {path}: {getattr(e, 'strerror', None) or e}") from None
    keys = frozenset(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    if not keys:
        raise NmtError(f"the API key file {path} has no keys (one per line)")
    return keys


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (it listens once a server runs on it); an address this process cannot
    listen on is refused in one line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise NmtError(f"--host {host}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    s = socket.socket(family, kind, proto)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(address)
    except OSError as e:
        s.close()
        raise NmtError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return s


def check_port(host: str, port: int) -> None:
    """Refuse, in one line and before the models load, an address this process cannot listen on."""
    bind_socket(host, port).close()
