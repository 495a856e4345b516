"""``blindbench study serve``: the study as a local web page (standard library only).

Routes (everything else is 404; the answer key and the manifest are never served):

- ``GET /``: the page (:mod:`blindbench.study.page`); a participant opens ``/?t=TOKEN``, their own link
- ``GET /api/state?token=TOKEN``: ``{participant, sheet, total, answered, done, question}``, where
  ``question`` is the first unanswered one, ``{question, left, right, input}`` with image URLs (``input`` null
  when absent), or null when done
- ``POST /api/answer`` (``Content-Type: application/json``) ``{token, question, choice, elapsed_ms?}``:
  200 ``{ok, state}``; 400 bad request, choice or elapsed_ms, 404 unknown token or question, 409 answered
  already, 413 body over 64 KiB
- ``GET /images/NAME.png``: only the images the sheets name

Only the secret token of a participant's link lets anyone read or answer their sheet; participant ids (p01, …)
are for the experimenter. Every request must name this server in its Host header (the bound address, or
localhost / 127.0.0.1, with the bound port), so a web page that rebinds its own domain name to 127.0.0.1 gets
403; a POST with an Origin header must come from the same origin.

Errors are JSON ``{"error": "one line"}``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import socket
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from blindbench.errors import BlindbenchError
from blindbench.study.answers import AnswerError, AnswerStore, UnknownParticipant
from blindbench.study.config import StudyServeConfig, check_port
from blindbench.study.page import PAGE
from blindbench.study.sheets import Study, load_study

MAX_BODY = 64 * 1024  # an answer is ~100 bytes; anything near this is not one
# A refused body up to this size is read and dropped first: closing on unread data makes the kernel send a
# reset, which can destroy the 413 reply before the client reads it.
_DRAIN_MAX = 1024 * 1024
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the page URL: never pass it on
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
}
_LOCAL_NAMES = ("localhost", "127.0.0.1")
_WILDCARDS = ("", "0.0.0.0", "::")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    study: Study
    store: AnswerStore
    log_answers: bool
    host_names: frozenset[str]  # hostnames a Host header may name (lower case, IPv6 without brackets)
    any_ip: bool  # bound to every interface: any IP literal names this server (a rebinding page sends a domain)

    def handle_error(self, request, client_address) -> None:
        # A page closed mid-download, or a client that stalled past the timeout, is not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Refused(Exception):
    """A request refused before it reaches the study: (status, one-line reason)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _host_port(value: str) -> tuple[str, int | None]:
    """(hostname in lower case, port or None) of a Host header or an origin's netloc; ValueError when malformed."""
    parts = urlsplit(f"//{value}")
    if not parts.hostname or parts.username is not None or parts.password is not None or parts.path:
        raise ValueError(value)
    return parts.hostname.lower(), parts.port


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "blindbench-study"
    sys_version = ""
    timeout = 30  # seconds a client may stall mid-request before its thread is freed

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

    # ------------------------------------------------------------------------------------------------- checks

    def _check_host(self) -> tuple[str, int | None]:
        """The request's (host, port) when its Host header names this server; else _Refused (403)."""
        value = self.headers.get("Host", "")
        try:
            host, port = _host_port(value)
        except ValueError:
            raise _Refused(HTTPStatus.BAD_REQUEST, f"bad or missing Host header {value[:80]!r}") from None
        named = host in self.server.host_names
        if not named and self.server.any_ip:
            try:
                ipaddress.ip_address(host)
                named = True
            except ValueError:
                pass
        if not named or (port or 80) != self.server.server_address[1]:
            raise _Refused(HTTPStatus.FORBIDDEN, f"Host {value[:80]!r} is not this server")
        return host, port

    def _check_origin(self, host: tuple[str, int | None]) -> None:
        """A POST from a page of another origin is refused (403); one without an Origin header is not a page's."""
        origin = self.headers.get("Origin")
        if origin is None:
            return
        parts = urlsplit(origin)
        try:
            same = parts.scheme == "http" and _host_port(parts.netloc) == host and parts.path in ("", "/")
        except ValueError:
            same = False
        if not same:
            raise _Refused(HTTPStatus.FORBIDDEN, f"cross-origin request refused (Origin {origin[:80]!r})")

    def _participant(self, token: object) -> str:
        """The participant whose link holds ``token`` (compared in constant time); else UnknownParticipant."""
        if isinstance(token, str) and token:
            given = token.encode("utf-8", "surrogatepass")
            found = None
            for secret, participant in self.server.study.tokens.items():
                if hmac.compare_digest(given, secret.encode()):
                    found = participant
            if found is not None:
                return found
        raise UnknownParticipant("unknown participant link: open the exact link (…/?t=…) you were given")

    # -------------------------------------------------------------------------------------------------- state

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

    # ------------------------------------------------------------------------------------------------- routes

    def _guarded(self, route) -> None:
        """Run ``route``; every way it can fail gets a reply with a one-line reason."""
        try:
            route()
        except _Refused as exc:
            self.close_connection = True  # the body, if any, was not read
            self._error(exc.status, str(exc))
        except AnswerError as exc:
            self._error(exc.status, str(exc))
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a bug: log it, but still answer
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}")

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._guarded(self._get)

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self._guarded(self._post)

    def _get(self) -> None:
        self._check_host()
        url = urlsplit(self.path)
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8")
        elif url.path == "/api/state":
            token = parse_qs(url.query).get("token", [""])[0]
            self._json(HTTPStatus.OK, self._state(self._participant(token)))
        elif url.path.lstrip("/") in self.server.study.images:
            data = (self.server.study.root / url.path.lstrip("/")).read_bytes()
            self._send(HTTPStatus.OK, data, "image/png", cache="private, max-age=3600")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"not found: {url.path[:200]}")

    def _post(self) -> None:
        self._check_origin(self._check_host())
        if urlsplit(self.path).path != "/api/answer":
            raise _Refused(HTTPStatus.NOT_FOUND, f"not found: {self.path[:200]}")
        if self.headers.get_content_type() != "application/json":
            raise _Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the answer as application/json")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length > MAX_BODY:
            if length <= _DRAIN_MAX:
                while length > 0 and (chunk := self.rfile.read(min(length, MAX_BODY))):
                    length -= len(chunk)
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
        if length < 1:
            raise _Refused(HTTPStatus.BAD_REQUEST, f"need a Content-Length of 1 to {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length))
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except RecursionError:
            self._error(HTTPStatus.BAD_REQUEST, "bad JSON: nested too deeply")
            return
        except (ValueError, UnicodeDecodeError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"bad JSON: {(str(exc).splitlines() or [''])[0][:200]}")
            return
        participant = self._participant(body.get("token"))
        answer = self.server.store.record(participant, body.get("question"), body.get("choice"), body.get("elapsed_ms"))
        if self.server.log_answers:
            print(f"{answer.participant} sheet {answer.sheet} question {answer.question}: {answer.choice}")
        self._json(HTTPStatus.OK, {"ok": True, "state": self._state(answer.participant)})


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
        bound = str(self.httpd.server_address[0]).lower()
        self.httpd.host_names = frozenset({host.lower().strip("[]"), bound, *_LOCAL_NAMES} - {""})
        self.httpd.any_ip = host in _WILDCARDS
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
        """The link to hand ``participant``: it holds their secret token (KeyError for an unknown id)."""
        return f"{self.url}?t={self.study.token_of(participant)}"

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
    """``blindbench study serve``: print the URL and every participant's link, serve until Ctrl-C."""
    if not cfg.study:
        raise BlindbenchError("give the study folder to serve")
    server = StudyServer(cfg.study, cfg.host, cfg.port, log_answers=True)
    print(f"study {Path(cfg.study)} at {server.url} (Ctrl-C to stop); answers go to {server.store.path}")
    print("  participant links (hand each person only their own; the token in it is their password):")
    for participant, sheet in sorted(server.study.participants.items()):
        print(f"    {participant} (sheet {sheet}): {server.participant_url(participant)}")
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
