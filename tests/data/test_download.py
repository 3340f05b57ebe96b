"""The download helper, offline: local archives served as file:// URLs or by a local HTTP server."""

import hashlib
import http.server
import io
import re
import subprocess
import sys
import tarfile
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from prn.data.download import (
    SOURCES,
    DownloadError,
    dataset_tree,
    download,
    download_archive,
    extract_archive,
    fetch,
    main,
)


def _tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _quiet(_: str) -> None:
    pass


MEMBERS = {"dtd/images/banded/banded_0001.jpg": b"jpeg", "dtd/labels/labels.txt": b"x"}


def test_tar_is_fetched_verified_unpacked_and_its_lone_folder_unwrapped(tmp_path):
    archive = _tar_gz(tmp_path / "dtd.tar.gz", MEMBERS)
    target = tmp_path / "data" / "dtd"
    download_archive(archive.as_uri(), target, sha256=_sha256(archive), log=_quiet)
    assert (target / "images" / "banded" / "banded_0001.jpg").read_bytes() == b"jpeg"
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["dtd"]


def test_zip_with_a_named_subfolder_and_md5(tmp_path):
    archive = _zip(
        tmp_path / "btad.zip", {"BTech_Dataset_transformed/01/train/ok/0000.bmp": b"bmp", "readme.txt": b"r"}
    )
    target = tmp_path / "btad"
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    download_archive(archive.as_uri(), target, md5=md5, archive_subdir="BTech_Dataset_transformed", log=_quiet)
    assert (target / "01" / "train" / "ok" / "0000.bmp").is_file() and not (target / "readme.txt").exists()


def test_flat_archive_becomes_the_root_as_is(tmp_path):
    extracted = tmp_path / "x"
    extract_archive(
        _tar_gz(tmp_path / "m.tar.gz", {"bottle/a.png": b"1", "cable/b.png": b"2", "license.txt": b"l"}), extracted
    )
    assert dataset_tree(extracted, None) == extracted


def test_checksum_mismatch_unpacks_nothing_and_leaves_no_trace(tmp_path):
    archive = _tar_gz(tmp_path / "a.tar.gz", MEMBERS)
    target = tmp_path / "data" / "dtd"
    with pytest.raises(DownloadError, match=r"sha256 of the downloaded archive is [0-9a-f]{64}, expected 0{64}"):
        download_archive(archive.as_uri(), target, sha256="0" * 64, log=_quiet)
    assert not target.exists() and list((tmp_path / "data").iterdir()) == []


def test_unpinned_checksum_is_reported_not_silently_skipped(tmp_path):
    archive = _zip(tmp_path / "k.zip", {"train/10000.png": b"p", "test/10001.png": b"q"})
    messages = []
    download_archive(archive.as_uri(), tmp_path / "ksdd2", log=messages.append)
    assert any(re.search(r"checksum not pinned.*sha256 [0-9a-f]{64}", m) for m in messages)
    assert (tmp_path / "ksdd2" / "train" / "10000.png").is_file()


def test_non_empty_root_is_never_overwritten(tmp_path):
    archive = _tar_gz(tmp_path / "a.tar.gz", MEMBERS)
    target = tmp_path / "dtd"
    target.mkdir()
    (target / "mine.txt").write_text("keep")
    with pytest.raises(DownloadError, match=r"not empty; refusing to overwrite"):
        download_archive(archive.as_uri(), target, log=_quiet)
    assert [p.name for p in target.iterdir()] == ["mine.txt"]


def test_empty_root_folder_is_filled(tmp_path):
    archive = _tar_gz(tmp_path / "a.tar.gz", MEMBERS)
    (tmp_path / "dtd").mkdir()
    download_archive(archive.as_uri(), tmp_path / "dtd", log=_quiet)
    assert (tmp_path / "dtd" / "labels" / "labels.txt").is_file()


@pytest.mark.parametrize("make", [_zip, _tar_gz])
def test_members_escaping_the_target_are_refused(tmp_path, make):
    archive = make(tmp_path / "evil.archive", {"ok.txt": b"1", "../escaped.txt": b"2"})
    with pytest.raises(DownloadError, match=r"'\.\./escaped\.txt' would be written outside"):
        download_archive(archive.as_uri(), tmp_path / "out" / "data", log=_quiet)
    assert not (tmp_path / "out" / "escaped.txt").exists() and not (tmp_path / "out" / "data").exists()


def test_an_html_error_page_is_not_an_archive(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<html>please log in</html>")
    with pytest.raises(DownloadError, match=r"neither a zip nor a tar archive"):
        download_archive(page.as_uri(), tmp_path / "data", log=_quiet)


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``payload``; the first ``failures`` responses announce it whole but send half."""

    payload = b""
    failures = 0
    requests = 0

    def do_GET(self):
        type(self).requests += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        cut = type(self).requests <= self.failures
        self.wfile.write(self.payload[: len(self.payload) // 2] if cut else self.payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_truncated_transfer_is_retried_from_scratch(tmp_path, flaky_server):
    _FlakyHandler.payload, _FlakyHandler.failures, _FlakyHandler.requests = bytes(range(256)) * 64, 1, 0
    messages = []
    url = f"http://127.0.0.1:{flaky_server.server_address[1]}/a.bin"
    fetch(url, tmp_path / "a.bin", retries=2, retry_wait=0, log=messages.append)
    assert (tmp_path / "a.bin").read_bytes() == _FlakyHandler.payload and _FlakyHandler.requests == 2
    assert "attempt 1/2 failed" in messages[0] and "cut short" in messages[0]


def test_giving_up_removes_the_partial_file(tmp_path, flaky_server):
    _FlakyHandler.payload, _FlakyHandler.failures, _FlakyHandler.requests = b"z" * 4096, 5, 0
    url = f"http://127.0.0.1:{flaky_server.server_address[1]}/a.bin"
    with pytest.raises(DownloadError, match=r"failed after 2 attempt\(s\)"):
        fetch(url, tmp_path / "a.bin", retries=2, retry_wait=0, log=_quiet)
    assert not (tmp_path / "a.bin").exists() and _FlakyHandler.requests == 2


def test_download_by_name_prints_terms_and_next_step(tmp_path):
    archive = _zip(tmp_path / "k.zip", {"KolektorSDD2/train/10000.png": b"p", "KolektorSDD2/test/10001.png": b"q"})
    sources = {"ksdd2": replace(SOURCES["ksdd2"], url=archive.as_uri())}
    messages = []
    root = download("ksdd2", tmp_path / "ksdd2", sources=sources, log=messages.append)
    assert (root / "train" / "10000.png").is_file()
    assert "CC BY-NC-SA 4.0" in messages[0] and f"dataset=ksdd2 root={root}" in messages[-1]


def test_dagm_is_manual_and_says_where_to_get_it(tmp_path, capsys):
    with pytest.raises(DownloadError, match=r"cannot be downloaded automatically"):
        download("dagm", tmp_path / "dagm", log=_quiet)
    assert main(["dagm", "--root", str(tmp_path / "dagm")]) == 2
    printed = capsys.readouterr().out
    assert "hci.iwr.uni-heidelberg.de" in printed and "Labels.txt" in printed and f"root={tmp_path / 'dagm'}" in printed
    assert not (tmp_path / "dagm").exists()


def test_unknown_name_is_rejected():
    with pytest.raises(DownloadError, match=r"unknown dataset 'visa'"):
        download("visa", log=_quiet)
    with pytest.raises(SystemExit):
        main(["visa"])


def test_every_source_has_terms_layout_and_either_a_link_or_steps():
    assert set(SOURCES) == {"mvtec", "btad", "dagm", "ksdd2", "dtd"}
    for source in SOURCES.values():
        assert source.licence and source.layout and source.homepage.startswith("http")
        assert (source.url is None) == bool(source.manual_steps)
        assert source.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", source.sha256)
        assert source.md5 is None or re.fullmatch(r"[0-9a-f]{32}", source.md5)


def test_module_runs_as_a_script():
    completed = subprocess.run(
        [sys.executable, "-m", "prn.data.download", "dagm"], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 2 and "DAGM 2007" in completed.stdout
