"""The BEIR downloader against a real HTTP server on loopback serving zips built here."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hardneg.core.beir import load_split
from hardneg.core.download import DownloadError, download_beir, validate_dataset_name
from tests.conftest import write_beir


class _Server:
    """Serves ``files`` (name -> bytes), honouring Range requests; counts requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: int | None = None  # drop the connection after this many body bytes
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append((name, self.headers.get("Range")))
                body = outer.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if (header := self.headers.get("Range")) is not None:
                    start = int(header.removeprefix("bytes=").rstrip("-"))
                    if start >= len(body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if outer.cut_after is not None:
                    self.wfile.write(payload[: outer.cut_after])
                    self.wfile.flush()
                    self.connection.close()
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/beir"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _zip_of(folder: Path, inner: str, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zipped.write(path, f"{inner}/{path.relative_to(folder)}")
        for name, data in (extra or {}).items():
            zipped.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def dataset_zip(tmp_path: Path) -> bytes:
    padding = {"toyset/README.bin": bytes(range(256)) * 2048}  # 512 KiB: arrives in many reads
    return _zip_of(write_beir(tmp_path / "src"), "toyset", padding)


def test_download_verifies_and_unpacks(server: _Server, dataset_zip: bytes, tmp_path: Path) -> None:
    server.files["toyset.zip"] = dataset_zip
    md5 = hashlib.md5(dataset_zip).hexdigest()
    folder = download_beir("toyset", tmp_path / "datasets", server.url, md5=md5)
    assert folder == tmp_path / "datasets" / "toyset"
    assert len(load_split(folder, "test").queries) == 3
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == [
        "toyset"
    ]  # no temp leftovers
    # a second call finds the folder and makes no request
    count = len(server.requests)
    assert download_beir("toyset", tmp_path / "datasets", server.url, md5=md5) == folder
    assert len(server.requests) == count


def test_checksum_mismatch_keeps_nothing(
    server: _Server, dataset_zip: bytes, tmp_path: Path
) -> None:
    server.files["toyset.zip"] = dataset_zip
    with pytest.raises(DownloadError, match="md5"):
        download_beir("toyset", tmp_path / "d", server.url, md5="0" * 32)
    assert list((tmp_path / "d").iterdir()) == []


def test_interrupted_download_resumes(server: _Server, dataset_zip: bytes, tmp_path: Path) -> None:
    server.files["toyset.zip"] = dataset_zip
    server.cut_after = len(dataset_zip) // 2
    md5 = hashlib.md5(dataset_zip).hexdigest()
    with pytest.raises(Exception):  # noqa: B017 - the connection drop surfaces as an httpx error
        download_beir("toyset", tmp_path / "d", server.url, md5=md5)
    part = tmp_path / "d" / "toyset.zip.part"
    assert 0 < part.stat().st_size < len(dataset_zip)
    assert not (tmp_path / "d" / "toyset").exists()
    server.cut_after = None
    folder = download_beir("toyset", tmp_path / "d", server.url, md5=md5)
    assert server.requests[-1] == ("toyset.zip", f"bytes={len(dataset_zip) // 2}-")
    assert (folder / "corpus.jsonl").is_file() and not part.exists()


def test_http_error_and_unsafe_archives(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_beir("missing", tmp_path / "d", server.url)
    src = write_beir(tmp_path / "src")
    server.files["evil.zip"] = _zip_of(src, "evil", {"../../escape.txt": b"x"})
    with pytest.raises(DownloadError, match="unsafe member"):
        download_beir("evil", tmp_path / "d", server.url)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "d" / "evil").exists()
    server.files["notbeir.zip"] = _zip_of(src / "qrels", "notbeir")
    with pytest.raises(Exception, match=r"no corpus\.jsonl"):
        download_beir("notbeir", tmp_path / "d", server.url)
    assert not (tmp_path / "d" / "notbeir").exists()


@pytest.mark.parametrize("name", ["../etc", "SciFact", "a/b", "", "x" * 65, "-lead"])
def test_dataset_names_are_validated(name: str) -> None:
    with pytest.raises(ValueError, match="invalid dataset name"):
        validate_dataset_name(name)
