"""Loading product images with limits: local files under a root, or http(s) URLs.

Every failure is a ``ValueError`` whose message says what was wrong with which
image; the worker turns it into a per-item error and goes on with the batch.
"""

from __future__ import annotations

import io
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
    timeout_s: float = 10.0
    allowed_schemes: tuple[str, ...] = ("http", "https")


@dataclass
class LoadedImage:
    image: Image.Image
    content: bytes


def _read_url(url: str, limits: ImageLimits) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "es-hybrid-search/0.1"})
    try:
        with urllib.request.urlopen(request, timeout=limits.timeout_s) as response:  # noqa: S310 (scheme checked)
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                raise ValueError(f"image {url} is {int(declared)} bytes, the limit is {limits.max_bytes}")
            content = response.read(limits.max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise ValueError(f"image {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ValueError(f"image {url}: cannot fetch ({reason})") from None
    if len(content) > limits.max_bytes:
        raise ValueError(f"image {url} is larger than the limit of {limits.max_bytes} bytes")
    return content


def _read_local(ref: str, root: Path | None, limits: ImageLimits) -> bytes:
    path = Path(ref)
    if root is not None:
        base = root.resolve()
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
