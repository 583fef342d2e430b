"""Image loading limits and filter parsing/rendering."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from hybrid_core.errors import FilterError
from hybrid_core.filters import parse_filter_args, parse_filters, to_es, to_sql
from hybrid_core.images import ImageLimits, decode_image, load_image


def jpeg_bytes(size=(60, 80), colour=(200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


def test_local_image_under_root(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(jpeg_bytes())
    loaded = load_image("img/a.jpg", root=tmp_path)
    assert loaded.image.size == (60, 80) and loaded.image.mode == "RGB"


def test_image_problems_are_clear(tmp_path):
    good = jpeg_bytes()
    (tmp_path / "trunc.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    (tmp_path / "big.jpg").write_bytes(good)
    outside = tmp_path.parent / "outside.jpg"
    outside.write_bytes(good)
    root = tmp_path
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_image("trunc.jpg", root=root)
    with pytest.raises(ValueError, match="not a readable image"):
        load_image("junk.jpg", root=root)
    with pytest.raises(ValueError, match="not found"):
        load_image("missing.jpg", root=root)
    with pytest.raises(ValueError, match="outside the images root"):
        load_image("../outside.jpg", root=root)
    with pytest.raises(ValueError, match="the limit is 100"):
        load_image("big.jpg", root=root, limits=ImageLimits(max_bytes=100))
    with pytest.raises(ValueError, match="scheme 'file' is not allowed"):
        load_image(f"file://{outside}", root=root)


def test_decompression_bomb_is_refused():
    buf = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buf, "PNG")  # 144 Mpx in a few kB
    with pytest.raises(ValueError, match="too many pixels \\(decompression bomb\\)"):
        decode_image(buf.getvalue(), "bomb.png", ImageLimits())


def test_unsupported_format_is_refused():
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "ICO")
    with pytest.raises(ValueError, match="format ICO is not supported"):
        decode_image(buf.getvalue(), "x.ico", ImageLimits())


def test_filters_parse_render_and_refuse(layout):
    spec = parse_filter_args(["colour=Red,Blue", "gender=Men", "price>=10", "price<50"])
    assert spec == {"colour": ["Red", "Blue"], "gender": "Men", "price": {"gte": "10", "lt": "50"}}
    conditions = parse_filters(spec, layout)
    clause, params = to_sql(conditions)
    assert clause == '"colour" IN (?, ?) AND "gender" IN (?) AND "price" >= ? AND "price" < ?'
    assert params == ["Red", "Blue", "Men", 10.0, 50.0]
    assert to_es(conditions) == [
        {"terms": {"colour": ["Red", "Blue"]}},
        {"term": {"gender": "Men"}},
        {"range": {"price": {"gte": 10.0, "lt": 50.0}}},
    ]
    with pytest.raises(FilterError, match="cannot filter on 'split'; filterable fields are"):
        parse_filters({"split": "test"}, layout)
    with pytest.raises(FilterError, match="colour is a keyword field"):
        parse_filters({"colour": {"gte": 1}}, layout)
    with pytest.raises(FilterError, match="'cheap' is not a number"):
        parse_filters({"price": {"gte": "cheap"}}, layout)
    with pytest.raises(FilterError, match="cannot read filter"):
        parse_filter_args(["colour"])


@pytest.fixture
def http_images(tmp_path):
    """A loopback HTTP server serving a photo, an oversized file and a slow response."""
    import http.server
    import threading
    import time

    photo = jpeg_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/slow.jpg":
                time.sleep(2)
            if self.path.startswith("/redirect?"):
                self.send_response(302)
                self.send_header("Location", self.path.split("?", 1)[1])
                self.end_headers()
                return
            if self.path == "/drip.jpg":  # a byte every 0.1 s: each read is quick, the whole is not
                self.send_response(200)
                self.end_headers()
                for _ in range(40):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
                return
            body = {"/photo.jpg": photo, "/big.jpg": b"x" * 5000, "/slow.jpg": photo}.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


LOOPBACK_OK = ImageLimits(allow_private_networks=True)


def test_http_images_with_size_and_time_limits(http_images):
    loaded = load_image(f"{http_images}/photo.jpg", root=None, limits=LOOPBACK_OK)
    assert loaded.image.size == (60, 80)
    with pytest.raises(ValueError, match="5000 bytes, the limit is 1000"):
        load_image(f"{http_images}/big.jpg", root=None, limits=ImageLimits(max_bytes=1000, allow_private_networks=True))
    with pytest.raises(ValueError, match="HTTP 404"):
        load_image(f"{http_images}/nothing.jpg", root=None, limits=LOOPBACK_OK)
    with pytest.raises(ValueError, match="cannot fetch"):
        load_image(f"{http_images}/slow.jpg", root=None, limits=ImageLimits(timeout_s=0.3, allow_private_networks=True))
    with pytest.raises(ValueError, match="longer than 1.0 s in total"):
        load_image(f"{http_images}/drip.jpg", root=None, limits=ImageLimits(total_timeout_s=1.0, allow_private_networks=True))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x.jpg",
        "http://localhost:9/x.jpg",
        "http://[::1]:9/x.jpg",
        "http://10.0.0.8/x.jpg",
        "http://192.168.1.1/x.jpg",
        "http://172.16.5.4/x.jpg",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://100.64.0.1/x.jpg",  # shared address space (carrier-grade NAT)
        "http://[::ffff:127.0.0.1]:9/x.jpg",  # IPv4-mapped loopback
        "http://0.0.0.0:9/x.jpg",
        "http://[fe80::1]/x.jpg",
    ],
)
def test_image_urls_into_private_networks_are_refused_by_default(url):
    with pytest.raises(ValueError, match="refused: host .* not a public address"):
        load_image(url, root=None)


def test_redirects_are_checked_again(http_images):
    # the first hop is allowed (loopback is configured as allowed), the target is not
    only_this_server = ImageLimits(allowed_networks=("127.0.0.1/32",))
    assert load_image(f"{http_images}/redirect?/photo.jpg", root=None, limits=only_this_server).image.size == (60, 80)
    with pytest.raises(ValueError, match="refused: host 127.0.0.2 resolves to 127.0.0.2"):
        load_image(f"{http_images}/redirect?http://127.0.0.2:9/photo.jpg", root=None, limits=only_this_server)
    with pytest.raises(ValueError, match="redirect to file:///etc/passwd refused"):
        load_image(f"{http_images}/redirect?file:///etc/passwd", root=None, limits=only_this_server)
    with pytest.raises(ValueError, match="HTTP 302 redirect to /redirect.* refused"):  # stops at max_redirects
        load_image(f"{http_images}/redirect?/redirect?/redirect?/redirect?/redirect?/photo.jpg", root=None,
                   limits=ImageLimits(allowed_networks=("127.0.0.1/32",), max_redirects=2))


def test_address_rules():
    limits = ImageLimits()
    assert limits.address_allowed("93.184.215.14") and limits.address_allowed("2606:4700::1111")
    assert not any(limits.address_allowed(a) for a in ("127.0.0.1", "10.1.1.1", "169.254.1.1", "::1", "fc00::1", "224.0.0.1"))
    assert ImageLimits(allow_private_networks=True).address_allowed("10.1.1.1")
    assert not ImageLimits(allow_private_networks=True).address_allowed("0.0.0.0")
    assert ImageLimits(allowed_networks=("10.1.0.0/16",)).address_allowed("10.1.200.3")
    assert not ImageLimits(allowed_networks=("10.1.0.0/16",)).address_allowed("10.2.0.1")


def test_local_images_need_a_root(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    with pytest.raises(ValueError, match="only under a configured images root"):
        load_image(str(tmp_path / "a.jpg"), root=None)
    with pytest.raises(ValueError, match="outside the images root"):
        load_image("/etc/passwd", root=tmp_path)
    with pytest.raises(ValueError, match="outside the images root"):
        load_image("sub/../../x.jpg", root=tmp_path / "a")
