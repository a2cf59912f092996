"""resource(): literal text, local and fsspec files, and http against a loopback server."""

from __future__ import annotations

import pickle
import socket
import threading
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fsspec
import pytest

from corral.util._resource import ResourceError, resource

TEXT = "You are a helpful assistant.\nAnswer in one line: ü ✓\n"


@pytest.fixture
def prompt(tmp_path: Path) -> Path:
    path = tmp_path / "prompt.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


# -- literal text -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Note: x",
        "",
        "first line\nsecond line\n",
        "Answer with C:\\x or D:/y",
        "fakescheme://not/a/protocol",
        "x" * 5000,
        "file:///" + "x" * 5000,  # a name too long for the filesystem
        "http://[::1",  # not a URL: urlparse refuses it
        "tests",  # a directory here, not a file
    ],
)
def test_literal_text_is_returned_unchanged(text: str) -> None:
    assert resource(text) == text


def test_missing_relative_and_absolute_paths_are_literal(tmp_path: Path) -> None:
    assert resource("no/such/prompt.txt") == "no/such/prompt.txt"
    missing = str(tmp_path / "missing.txt")
    assert resource(missing) == missing
    assert resource(f"file://{missing}") == f"file://{missing}"


# -- files ------------------------------------------------------------------------------------


def test_absolute_path_is_read(prompt: Path) -> None:
    assert resource(str(prompt)) == TEXT


def test_relative_path_is_read(prompt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(prompt.parent)
    assert resource("prompt.txt") == TEXT
    assert resource("./prompt.txt", type="file") == TEXT


def test_file_url_is_read(prompt: Path) -> None:
    assert resource(prompt.as_uri()) == TEXT


def test_memory_protocol_is_read() -> None:
    url = f"memory://corral-tests/{uuid.uuid4().hex}/prompt.txt"
    with fsspec.open(url, "wt", encoding="utf-8") as f:
        f.write(TEXT)
    try:
        assert resource(url) == TEXT
        assert resource(url, type="file") == TEXT
    finally:
        fsspec.filesystem("memory").rm(url)
    assert resource(url) == url  # gone: literal again


def test_fs_options_reach_the_filesystem(prompt: Path) -> None:
    assert resource(str(prompt), fs_options={"auto_mkdir": False}) == TEXT


def test_type_file_missing_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        resource(str(tmp_path / "missing.txt"), type="file")
    with pytest.raises(FileNotFoundError):
        resource("memory://corral-tests/missing.txt", type="file")
    with pytest.raises(FileNotFoundError):
        resource("", type="file")


def test_type_file_does_not_fall_back_to_literal_text() -> None:
    with pytest.raises(FileNotFoundError):
        resource("Note: x", type="file")


def test_existing_file_that_is_not_utf8_raises(tmp_path: Path) -> None:
    path = tmp_path / "image.bin"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(UnicodeDecodeError):
        resource(str(path))


def test_url_of_a_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        resource(tmp_path.as_uri())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="type"):
        resource("x", type="url")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="resource"):
        resource(Path("x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fs_options"):
        resource("x", fs_options=[("anon", True)])  # type: ignore[arg-type]


# -- http -------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    release: threading.Event

    def do_GET(self) -> None:
        if self.path == "/prompt.txt":
            self._send(HTTPStatus.OK, TEXT.encode(), "text/plain; charset=utf-8")
        elif self.path == "/latin1.txt":
            self._send(HTTPStatus.OK, "café".encode("latin-1"), "text/plain; charset=latin-1")
        elif self.path in ("/moved", "/moved-away"):
            self.send_response(HTTPStatus.FOUND)
            target = "/prompt.txt" if self.path == "/moved" else "/gone.txt"
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/slow":
            self.release.wait()
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not here", "text/plain")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A real HTTP server on a loopback port, shared by the module; yields its base URL."""
    release = threading.Event()
    handler = type("Handler", (_Handler,), {"release": release})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="test-http-server")
    thread.start()
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
                monkeypatch.delenv(name, raising=False)
                monkeypatch.delenv(name.lower(), raising=False)
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_http_200_is_read(server: str) -> None:
    assert resource(f"{server}/prompt.txt") == TEXT
    assert resource(f"{server}/prompt.txt", type="file") == TEXT


def test_http_declared_charset_is_honoured(server: str) -> None:
    assert resource(f"{server}/latin1.txt") == "café"


def test_http_redirect_is_followed(server: str) -> None:
    assert resource(f"{server}/moved") == TEXT


def test_http_redirect_can_be_refused(server: str) -> None:
    url = f"{server}/moved"
    with pytest.raises(ResourceError, match="302") as caught:
        resource(url, fs_options={"follow_redirects": False})
    assert caught.value.status_code == 302


def test_http_404_names_url_and_status(server: str) -> None:
    url = f"{server}/missing.txt"
    with pytest.raises(ResourceError) as caught:
        resource(url)
    assert url in str(caught.value)
    assert "404" in str(caught.value)
    assert caught.value.url == url
    assert caught.value.status_code == 404
    assert isinstance(caught.value, OSError)


def test_http_404_after_redirect_names_both_urls(server: str) -> None:
    url = f"{server}/moved-away"
    with pytest.raises(ResourceError, match="404") as caught:
        resource(url, type="file")
    assert url in str(caught.value)
    assert f"redirected to {server}/gone.txt" in str(caught.value)


def test_http_timeout_raises_timeout_error(server: str) -> None:
    """The server never answers; the timeout we pass is what fires."""
    url = f"{server}/slow"
    with pytest.raises(TimeoutError, match="/slow"):
        resource(url, fs_options={"timeout": 0.2})


def test_http_refused_connection_raises_resource_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/prompt.txt"
    with pytest.raises(ResourceError) as caught:
        resource(url)
    assert caught.value.url == url
    assert caught.value.status_code is None


def test_resource_error_pickles() -> None:
    error = ResourceError("could not read u: HTTP 404", url="u", status_code=404)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.url, copy.status_code) == (str(error), "u", 404)
