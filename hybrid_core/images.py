"""Loading product images with limits: local files under a root, or http(s) URLs.

Every failure is a ``ValueError`` whose message says what was wrong with which
image; the worker turns it into a per-item error and goes on with the batch.

A catalogue update names its image URLs, so the worker fetches whatever a producer
writes: without care that is a server-side request forgery into the network the
worker sits in (cloud metadata at 169.254.169.254, an admin page on localhost).
So, by default: only http and https; the host is resolved once and every address
it resolves to must be public (``ipaddress``'s ``is_global``; no loopback, private,
link-local, shared or reserved ranges), and the connection goes to that checked
address (no second lookup for a rebinding DNS answer to change); redirects go
through the same checks, at most ``max_redirects``; proxies from the environment
are ignored; size and time are bounded (per socket operation and in total). Local
files are read only under a configured root, after resolving ``..`` and symlinks.
"""

from __future__ import annotations

import functools
import http.client
import io
import ipaddress
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"})


@dataclass(frozen=True)
class ImageLimits:
    """Bounds on what one image may cost the worker."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    timeout_s: float = 10.0  # each connect and each read
    total_timeout_s: float = 30.0  # the whole fetch, redirects included
    allowed_schemes: tuple[str, ...] = ("http", "https")
    allow_private_networks: bool = False  # loopback, private, link-local, ... (an intranet image server)
    allowed_networks: tuple[str, ...] = ()  # CIDRs allowed although not public, e.g. ("10.20.0.0/16",)
    max_redirects: int = 3

    def address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in ipaddress.ip_network(net, strict=False) for net in self.allowed_networks):
            return True
        if ip.is_multicast or ip.is_unspecified:
            return False
        return self.allow_private_networks or ip.is_global


@dataclass
class LoadedImage:
    image: Image.Image
    content: bytes


class RefusedAddress(ValueError):
    """The image host is (or resolves to) an address the limits do not allow."""


def _checked_socket(host: str, port: int, timeout: float | None, limits: ImageLimits) -> socket.socket:
    """Resolve ``host`` once, require every address to be allowed, connect to the first that answers."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    refused = [a for a in addresses if not limits.address_allowed(a)]
    if refused:
        raise RefusedAddress(
            f"host {host} resolves to {', '.join(refused)}, which is not a public address (loopback, private, link-local "
            "or reserved); set image_allow_private_networks or image_allowed_networks to fetch from it"
        )
    last: OSError | None = None
    for info in infos:
        family, kind, proto, _, address = info
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"cannot connect to {host}")


class _CheckedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, limits: ImageLimits, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits

    def connect(self) -> None:
        self.sock = _checked_socket(self.host, self.port, self.timeout, self._limits)


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, limits: ImageLimits, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits

    def connect(self) -> None:
        sock = _checked_socket(self.host, self.port, self.timeout, self._limits)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, limits: ImageLimits) -> None:
        super().__init__()
        self.limits = limits

    def http_open(self, req):
        return self.do_open(functools.partial(_CheckedHTTPConnection, limits=self.limits), req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, limits: ImageLimits) -> None:
        super().__init__()
        self.limits = limits

    def https_open(self, req):
        return self.do_open(functools.partial(_CheckedHTTPSConnection, limits=self.limits), req, context=self._context)


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, limits: ImageLimits) -> None:
        super().__init__()
        self.limits = limits
        self.max_redirections = limits.max_redirects
        self.max_repeats = limits.max_redirects

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in self.limits.allowed_schemes:
            raise ValueError(f"redirect to {newurl}: scheme {scheme!r} is not allowed (allowed: {list(self.limits.allowed_schemes)})")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(limits: ImageLimits) -> urllib.request.OpenerDirector:
    """urllib with checked connections and redirects, and no proxies from the environment."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler({}),
        urllib.request.UnknownHandler(),
        _CheckedHTTPHandler(limits),
        _CheckedHTTPSHandler(limits),
        urllib.request.HTTPDefaultErrorHandler(),
        _CheckedRedirects(limits),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _read_url(url: str, limits: ImageLimits) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "es-hybrid-search/0.1"})
    deadline = time.monotonic() + limits.total_timeout_s
    try:
        with _opener(limits).open(request, timeout=limits.timeout_s) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                raise ValueError(f"image {url} is {int(declared)} bytes, the limit is {limits.max_bytes}")
            chunks, size = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise ValueError(f"image {url}: took longer than {limits.total_timeout_s} s in total")
                chunk = response.read(64 * 1024)
                if not chunk:
                    break
                size += len(chunk)
                if size > limits.max_bytes:
                    raise ValueError(f"image {url} is larger than the limit of {limits.max_bytes} bytes")
                chunks.append(chunk)
    except RefusedAddress as exc:
        raise ValueError(f"image {url}: refused: {exc}") from None
    except urllib.error.HTTPError as exc:
        location = exc.headers.get("Location") if exc.headers else None
        if 300 <= exc.code < 400 and location:
            # urllib stops at a redirect to a scheme it will not follow, or past max_redirects
            raise ValueError(f"image {url}: HTTP {exc.code} redirect to {location} refused ({exc.reason})") from None
        raise ValueError(f"image {url}: HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, RefusedAddress):
            raise ValueError(f"image {url}: refused: {exc.reason}") from None
        raise ValueError(f"image {url}: cannot fetch ({exc.reason})") from None
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        raise ValueError(f"image {url}: cannot fetch ({exc})") from None
    return b"".join(chunks)


def _read_local(ref: str, root: Path | None, limits: ImageLimits) -> bytes:
    if root is None:
        raise ValueError(f"image {ref}: local image paths are read only under a configured images root")
    base = root.resolve()
    path = Path(ref)
    path = (base / path).resolve() if not path.is_absolute() else path.resolve()
    if path != base and base not in path.parents:
        raise ValueError(f"image {ref} is outside the images root {base}")
    if not path.is_file():
        raise ValueError(f"image {ref} not found")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise ValueError(f"image {ref} is {size} bytes, the limit is {limits.max_bytes}")
    return path.read_bytes()


def decode_image(content: bytes, ref: str, limits: ImageLimits) -> Image.Image:
    """Decode fully (so truncation shows now, not inside the model) within the pixel limit."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as probe:
                fmt = probe.format
                width, height = probe.size
                if fmt not in ALLOWED_FORMATS:
                    raise ValueError(f"image {ref}: format {fmt} is not supported (use one of {sorted(ALLOWED_FORMATS)})")
                if width < 1 or height < 1:
                    raise ValueError(f"image {ref} is {width}x{height}")
                if width * height > limits.max_pixels:
                    raise ValueError(f"image {ref} is {width}x{height} pixels, the limit is {limits.max_pixels}")
                probe.load()
                return probe.convert("RGB")
    except ValueError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"image {ref} has too many pixels (decompression bomb): {exc}") from None
    except UnidentifiedImageError:
        raise ValueError(f"image {ref} is not a readable image") from None
    except (OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"image {ref} is corrupt or truncated ({exc})") from None


def load_image(ref: str, *, root: Path | None, limits: ImageLimits = ImageLimits()) -> LoadedImage:
    """Read and decode one image reference (URL or path relative to ``root``)."""
    scheme = urllib.parse.urlsplit(ref).scheme.lower()
    if scheme and len(scheme) > 1:  # a one-letter scheme is a Windows drive, i.e. a path
        if scheme not in limits.allowed_schemes:
            raise ValueError(f"image {ref}: scheme {scheme!r} is not allowed (allowed: {list(limits.allowed_schemes)})")
        content = _read_url(ref, limits)
    else:
        content = _read_local(ref, root, limits)
    return LoadedImage(decode_image(content, ref, limits), content)
