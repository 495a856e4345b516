"""``blindbench study serve``: the study as a local web page (standard library only).

Routes (everything else is 404; the answer key and the manifest are never served):

- ``GET /``: the page (:mod:`blindbench.study.page`)
- ``GET /api/state?participant=ID``: ``{participant, sheet, total, answered, done, question}``, where
  ``question`` is the first unanswered one, ``{question, left, right, input}`` with image URLs (``input`` null
  when absent), or null when done
- ``POST /api/answer`` (``Content-Type: application/json``) ``{participant, question, choice, elapsed_ms?}``:
  200 ``{ok, state}``; 400 bad request or choice, 404 unknown participant or question, 409 answered already
- ``GET /images/NAME.png``: only the images the sheets name

Errors are JSON ``{"error": "one line"}``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from blindbench.errors import BlindbenchError
from blindbench.study.answers import AnswerError, AnswerStore
from blindbench.study.config import StudyServeConfig, check_port
from blindbench.study.page import PAGE
from blindbench.study.sheets import Study, load_study

_MAX_BODY = 4096
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    study: Study
    store: AnswerStore
    log_answers: bool

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a page closed mid-download is not an error
            super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "blindbench-study"
    sys_version = ""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - base-class signature
        pass  # the page polls nothing, but a request log would still drown the answer log

    def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for name, value in _HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: dict) -> None:
        self._send(status, json.dumps(data).encode(), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _state(self, participant: str) -> dict:
        store = self.server.store
        sheet = store.sheet_of(participant)
        questions = self.server.study.sheet(sheet)
        done = store.answered(participant)
        pending = [q for q in questions if q.question not in done]
        question = None
        if pending:
            q = pending[0]
            question = {
                "question": q.question,
                "left": "/" + q.left,
                "right": "/" + q.right,
                "input": "/" + q.input if q.input else None,
            }
        return {
            "participant": participant,
            "sheet": sheet,
            "total": len(questions),
            "answered": len(questions) - len(pending),
            "done": not pending,
            "question": question,
        }

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        url = urlsplit(self.path)
        try:
            if url.path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8")
            elif url.path == "/api/state":
                participant = parse_qs(url.query).get("participant", [""])[0]
                self._json(HTTPStatus.OK, self._state(participant))
            elif url.path.lstrip("/") in self.server.study.images:
                data = (self.server.study.root / url.path.lstrip("/")).read_bytes()
                self._send(HTTPStatus.OK, data, "image/png", cache="private, max-age=3600")
            else:
                self._error(HTTPStatus.NOT_FOUND, f"not found: {url.path}")
        except AnswerError as exc:
            self._error(exc.status, str(exc))

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        if urlsplit(self.path).path != "/api/answer":
            self._error(HTTPStatus.NOT_FOUND, f"not found: {self.path}")
            return
        if self.headers.get_content_type() != "application/json":
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the answer as application/json")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 < length <= _MAX_BODY:
            self._error(HTTPStatus.BAD_REQUEST, f"body must be 1 to {_MAX_BODY} bytes")
            return
        try:
            body = json.loads(self.rfile.read(length))
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"bad JSON: {exc}")
            return
        try:
            answer = self.server.store.record(
                str(body.get("participant", "")), body.get("question"), body.get("choice"), body.get("elapsed_ms")
            )
            if self.server.log_answers:
                print(f"{answer.participant} sheet {answer.sheet} question {answer.question}: {answer.choice}")
            self._json(HTTPStatus.OK, {"ok": True, "state": self._state(answer.participant)})
        except AnswerError as exc:
            self._error(exc.status, str(exc))


class StudyServer:
    """A running study page; bind on construction, then ``start()`` (background thread) or ``serve_forever()``.

    ``port=0`` picks a free port; ``url`` says which. Use as a context manager to stop it on exit.

    Raises:
        BlindbenchError: the study does not check out, ``port`` is not 0-65535, or the address cannot be bound
            (e.g. port in use).
    """

    def __init__(
        self,
        study_dir: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 8765,
        log_answers: bool = False,
    ) -> None:
        check_port(port)  # socket.bind raises OverflowError (a traceback) for 99999 or -1
        study = load_study(study_dir)
        store = AnswerStore(study)
        kind = _Server6 if ":" in host else _Server
        try:
            self.httpd = kind((host, port), _Handler)
        except OSError as exc:
            if getattr(exc, "errno", None) in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise BlindbenchError(f"port {port} on {host} is in use; pick another with --port") from None
            raise BlindbenchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.httpd.study, self.httpd.store, self.httpd.log_answers = study, store, log_answers
        self.study, self.store = study, store
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self.httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def participant_url(self, participant: str) -> str:
        return f"{self.url}?p={participant}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> StudyServer:
        self._thread = threading.Thread(target=self.serve_forever, name="study-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> StudyServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def run_study_serve(cfg: StudyServeConfig) -> None:
    """``blindbench study serve``: print the URL, serve until Ctrl-C."""
    if not cfg.study:
        raise BlindbenchError("give the study folder to serve")
    server = StudyServer(cfg.study, cfg.host, cfg.port, log_answers=True)
    ids = sorted(server.study.participants)
    print(f"study {Path(cfg.study)} at {server.url} (Ctrl-C to stop); answers go to {server.store.path}")
    print(f"  participant links: {server.participant_url(ids[0])} … {server.participant_url(ids[-1])}")
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"  note: bound to {cfg.host}, so other machines can reach the page", file=sys.stderr)
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print(f"stopped; {len(server.store.all())} answers in {server.store.path}")
