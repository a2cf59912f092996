"""``resource()``: resolve a string that is either literal text or where to read it.

Paths and URLs of every fsspec protocol (local paths and ``file://``
included) are read through fsspec; ``http://`` and ``https://`` through an
httpx client with explicit timeouts, so that an HTTP error status is an
error, never text.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlparse

__all__ = ["ResourceError", "resource"]

#: Seconds an HTTP read may take, and its connection, unless ``fs_options`` passes ``timeout``.
HTTP_TIMEOUT = 30.0
HTTP_CONNECT_TIMEOUT = 10.0


class ResourceError(OSError):
    """An ``http(s)://`` resource could not be read.

    Raised for a response whose status is not 2xx (after following
    redirects) and for transport failures (refused connection, bad TLS, ...).
    A timeout raises the builtin :class:`TimeoutError` instead.

    Attributes:
        url: The URL that was requested.
        status_code: The response's HTTP status, or ``None`` when there was no
            response.
    """

    def __init__(self, message: str, *, url: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status_code = status_code

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make_resource_error, (str(self), self.url, self.status_code))


def _make_resource_error(message: str, url: str, status_code: int | None) -> ResourceError:
    return ResourceError(message, url=url, status_code=status_code)


def resource(
    resource: str,
    type: Literal["auto", "file"] = "auto",
    fs_options: Mapping[str, Any] | None = None,
) -> str:
    """Return the text a resource names, or the resource string itself.

    With ``type="auto"`` (the default), *resource* is read when it looks like
    a URL (a scheme followed by ``://``) or names an existing local file, and
    is returned unchanged otherwise: ``"Note: x"``, ``""`` and multi-line text
    are literal text. A URL of an unknown protocol, or one whose file does not
    exist, is literal text too; an ``http(s)://`` URL is always read, and an
    error status raises. With ``type="file"``, *resource* is always read.

    Files are read as UTF-8 text through fsspec (local paths, ``file://``,
    ``memory://``, ``s3://`` with s3fs installed, ...); ``http(s)://`` URLs
    through httpx, following redirects, decoded with the charset the server
    declares (else UTF-8).

    This is a sync function that blocks while it reads. From async code, run
    it in a worker thread (``await anyio.to_thread.run_sync(resource, url)``);
    it is not a checkpoint, and cancellation cannot interrupt a read in
    progress.

    Args:
        resource: Literal text, a path, or a URL.
        type: ``"auto"`` or ``"file"``.
        fs_options: Options for the filesystem: keyword arguments of the
            fsspec filesystem (for example ``{"anon": True}`` for a public S3
            bucket), or for ``http(s)://`` keyword arguments of
            ``httpx.Client`` (``headers``, ``timeout``, ``verify``, ...).
            Defaults: a 30 s timeout (10 s to connect) and
            ``follow_redirects=True``.

    Returns:
        The text read, or *resource* unchanged.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: *type* is not ``"auto"`` or ``"file"``.
        FileNotFoundError: ``type="file"`` and the file does not exist.
        ResourceError: An ``http(s)://`` URL answered with a status that is
            not 2xx, or could not be reached.
        TimeoutError: An ``http(s)://`` read took longer than its timeout.
        OSError: Reading a file that exists failed.
        UnicodeDecodeError: A file is not UTF-8 text.
        ImportError: The fsspec implementation of the URL's protocol is not
            installed (for example s3fs for ``s3://``), or httpx is not, for
            an ``http(s)://`` URL (``pip install 'corral[http]'``).
    """
    if not isinstance(resource, str):
        raise TypeError(f"resource must be a str, got {_type_name(resource)}")
    if type not in ("auto", "file"):
        raise ValueError(f'type must be "auto" or "file", got {type!r}')
    if fs_options is None:
        options: dict[str, Any] = {}
    elif isinstance(fs_options, Mapping):
        options = dict(fs_options)
    else:
        raise TypeError(f"fs_options must be a mapping, got {_type_name(fs_options)}")

    if type == "file":
        if not resource:
            raise FileNotFoundError(errno.ENOENT, "resource is an empty path", resource)
        return _read(resource, options)
    if not resource:
        return resource
    try:
        parsed = urlparse(resource)
    except ValueError:
        return resource
    if parsed.scheme and "://" in resource:
        if _is_http(resource):
            return _read_http(resource, options)
        try:
            return _read(resource, options)
        except (ValueError, FileNotFoundError):  # unknown protocol, missing file
            return resource
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                return resource
            raise
    from fsspec.core import url_to_fs

    try:
        fs, path = url_to_fs(resource, **options)
        is_file = fs.isfile(path)
    except (ValueError, OSError):
        return resource
    return _read(resource, options) if is_file else resource


def _type_name(value: object) -> str:
    return value.__class__.__name__


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def _read(url: str, options: dict[str, Any]) -> str:
    if _is_http(url):
        return _read_http(url, options)
    import fsspec

    with fsspec.open(url, "rt", encoding="utf-8", **options) as f:
        text: str = f.read()
    return text


def _read_http(url: str, options: dict[str, Any]) -> str:
    try:
        import httpx
    except ImportError as exc:
        raise ImportError(
            f"resource() needs httpx to read {url}: install it with pip install 'corral[http]'",
            name=exc.name,
        ) from exc

    timeout = httpx.Timeout(HTTP_TIMEOUT, connect=HTTP_CONNECT_TIMEOUT)
    client_options: dict[str, Any] = {"timeout": timeout, "follow_redirects": True}
    client_options.update(options)
    try:
        with httpx.Client(**client_options) as client:
            response = client.get(url)
    except httpx.TimeoutException as exc:
        raise TimeoutError(f"reading {url} timed out ({exc.__class__.__name__})") from exc
    except httpx.HTTPError as exc:
        raise ResourceError(f"could not read {url}: {exc}", url=url) from exc
    if not response.is_success:
        where = "" if str(response.url) == url else f" (redirected to {response.url})"
        raise ResourceError(
            f"could not read {url}{where}: HTTP {response.status_code} {response.reason_phrase}",
            url=url,
            status_code=response.status_code,
        )
    return response.text
