"""HTTP requests bounded in total time and in bytes, whoever answers.

A registry, a mirror or whatever listens on Ollama's port may be slow or
hostile: a socket timeout bounds each receive, not a request, and a server
that sends a byte a second would hold a caller for ever. Here a deadline
closes the connection from a timer thread, so a request ends within its
bound whatever the server does, and an answer is read only up to a size.
Every failure is a ``TransportError`` with the reason in words.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

# A header block is small; http.client's own limits (100 headers, 64 KiB a
# line) still apply, and their errors are reported like any other.
MAX_REDIRECTS = 3


class TransportError(Exception):
    """The request did not get a usable answer (no connection, a deadline, a
    malformed or oversized answer); the text says which."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def _context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    return context


class _Deadline:
    """Shuts the connection's socket down when the time is up, from a timer, so
    that a receive blocked on a slow server returns at once."""

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self.connection = connection
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        self.expired = True
        sock = self.connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()


def _connection(
    url: str, timeout: float, ca_file: Path | None
) -> tuple[http.client.HTTPConnection, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransportError(f"{url}: not an http(s) URL")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        port = parts.port
    except ValueError:
        raise TransportError(f"{url}: bad port") from None
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, port, timeout=timeout, context=_context(ca_file)
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
    return connection, target


def request(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    seconds: float = 30.0,
    max_bytes: int = 1024 * 1024,
    ca_file: Path | None = None,
    follow_redirects: bool = True,
) -> Answer:
    """One request (and up to MAX_REDIRECTS redirects for GET and HEAD), all of
    it within ``seconds``; the body read up to ``max_bytes``."""
    deadline = time.monotonic() + seconds
    for _hop in range(MAX_REDIRECTS + 1):
        answer = _one_request(
            url,
            method=method,
            body=body,
            headers=headers or {},
            deadline=deadline,
            max_bytes=max_bytes,
            ca_file=ca_file,
        )
        location = answer.header("location")
        if not (follow_redirects and answer.status in (301, 302, 303, 307, 308) and location):
            return answer
        if method not in ("GET", "HEAD"):
            return answer
        url = urllib.parse.urljoin(url, location)
    raise TransportError(f"{url}: more than {MAX_REDIRECTS} redirects")


def _one_request(
    url: str,
    *,
    method: str,
    body: bytes | None,
    headers: Mapping[str, str],
    deadline: float,
    max_bytes: int,
    ca_file: Path | None,
) -> Answer:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransportError(f"{url}: no answer within the time allowed")
    connection, target = _connection(url, left, ca_file)
    with _Deadline(connection, left) as timer:
        try:
            connection.request(method, target, body=body, headers=dict(headers))
            response = connection.getresponse()
            raw = response.read(max_bytes + 1) if method != "HEAD" else b""
            status, answer_headers = response.status, response.getheaders()
        except (OSError, http.client.HTTPException, ValueError) as error:
            if timer.expired:
                raise TransportError(f"{url}: no whole answer within {left:.0f} s") from None
            raise TransportError(f"{url}: {_reason(error)}") from None
        finally:
            connection.close()
    if timer.expired:
        raise TransportError(f"{url}: no whole answer within {left:.0f} s")
    if len(raw) > max_bytes:
        raise TransportError(f"{url}: an answer longer than {max_bytes} bytes")
    return Answer(status, {key.lower(): value for key, value in answer_headers}, raw, url)


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        return f"TLS: {error.reason or error}"
    if isinstance(error, socket.gaierror):
        return f"the name does not resolve ({error.strerror})"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(error, socket.timeout):
        return "timed out"
    if isinstance(error, http.client.HTTPException):
        return f"a malformed answer ({type(error).__name__}: {error})"
    return str(getattr(error, "strerror", None) or error) or type(error).__name__


@dataclass
class LineStream:
    """The lines of a streamed answer (NDJSON), each bounded in length; the
    stream must show a line at least every ``idle_seconds``."""

    status: int
    url: str
    _response: http.client.HTTPResponse
    _connection: http.client.HTTPConnection
    max_line: int

    def lines(self) -> Iterator[bytes]:
        try:
            while True:
                line = self._response.readline(self.max_line + 1)
                if not line:
                    return
                if len(line) > self.max_line and not line.endswith(b"\n"):
                    raise TransportError(f"{self.url}: a line longer than {self.max_line} bytes")
                yield line
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise TransportError(f"{self.url}: {_reason(error)}") from None

    def close(self) -> None:
        self._connection.close()


def open_stream(
    url: str,
    body: bytes,
    *,
    idle_seconds: float,
    connect_seconds: float = 30.0,
    max_line: int = 64 * 1024,
) -> LineStream:
    """POST ``body`` and return the answer's lines as they come (a long pull
    streams progress for as long as it runs: the bound is on silence)."""
    connection, target = _connection(url, connect_seconds, None)
    try:
        with _Deadline(connection, connect_seconds) as timer:
            try:
                connection.request(
                    "POST", target, body=body, headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
            except (OSError, http.client.HTTPException, ValueError) as error:
                if timer.expired:
                    raise TransportError(
                        f"{url}: no answer within {connect_seconds:.0f} s"
                    ) from None
                raise TransportError(f"{url}: {_reason(error)}") from None
        if connection.sock is not None:
            connection.sock.settimeout(idle_seconds)
    except BaseException:
        connection.close()
        raise
    return LineStream(response.status, url, response, connection, max_line)
