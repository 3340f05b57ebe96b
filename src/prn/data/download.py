"""Fetch the benchmark datasets: ``python -m prn.data.download NAME [--root DIR]``.

NAME is one of ``mvtec``, ``btad``, ``dagm``, ``ksdd2``, ``dtd``. Where the owners publish
a direct link, the archive is streamed to a staging folder next to ``--root``, checked
against a pinned checksum (or reported as not pinned), unpacked, and only then moved to
``--root``: a failed or interrupted run never leaves a half-filled dataset behind, and
a non-empty ``--root`` is never overwritten. Failed transfers are retried from scratch
(no resume). DAGM 2007 has no link this tool may use: it prints where to get it.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60


class DownloadError(RuntimeError):
    """A download, checksum or extraction failed; the message says what to do next."""


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset comes from, under which terms, and how it must look once unpacked.

    ``url=None`` means there is no direct link this tool may use; ``archive_subdir`` is the
    folder inside the archive whose contents become ``root`` (a single top-level folder is
    unwrapped anyway).
    """

    name: str
    title: str
    homepage: str
    licence: str
    layout: str
    default_root: str
    use: str
    url: str | None = None
    sha256: str | None = None
    md5: str | None = None
    archive_subdir: str | None = None
    manual_steps: str = ""


SOURCES: dict[str, DatasetSource] = {
    "mvtec": DatasetSource(
        name="mvtec",
        title="MVTec AD (Bergmann et al., CVPR 2019), 4.9 GiB",
        homepage="https://www.mvtec.com/company/research/datasets/mvtec-ad",
        licence="CC BY-NC-SA 4.0, (c) MVTec Software GmbH: non-commercial research use only.",
        layout="<root>/<category>/{train/good, test/<defect>, ground_truth/<defect>/NNN_mask.png}",
        default_root="data/mvtec_anomaly_detection",
        use="dataset=mvtec root={root} category=bottle",
        url="https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download/420938113-1629952094/mvtec_anomaly_detection.tar.xz",
        sha256="cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
    ),
    "btad": DatasetSource(
        name="btad",
        title="BTAD, beanTech Anomaly Detection (Mishra et al., ISIE 2021), 1.2 GB",
        homepage="http://avires.dimi.uniud.it/papers/btad/",
        licence="See the BTAD page for its terms (third parties list it as CC BY-SA 4.0); cite VT-ADL.",
        layout="<root>/{01,02,03}/{train/ok, test/ok, test/ko, ground_truth/ko}",
        default_root="data/btad",
        use="dataset=btad root={root} category=01",
        url="https://avires.dimi.uniud.it/papers/btad/btad.zip",
        sha256="461c9387e515bfed41ecaae07c50cf6b10def647b36c9e31d239ab2736b10d2a",
        archive_subdir="BTech_Dataset_transformed",
    ),
    "dagm": DatasetSource(
        name="dagm",
        title="DAGM 2007 competition data, 10 classes (Wieler & Hahn)",
        homepage="https://hci.iwr.uni-heidelberg.de/node/3616",
        licence="Distributed by HCI Heidelberg under terms you accept on its page; not redistributed or fetched here.",
        layout="<root>/Class{1..10}/{Train,Test}/NNNN.PNG with {Train,Test}/Label/{Labels.txt, NNNN_label.PNG}",
        default_root="data/dagm",
        use="dataset=dagm root={root} category=Class1",
        manual_steps=(
            "Download the 10-class archives (Class1.zip .. Class10.zip) from the page above after accepting its terms "
            "(a mirror: https://www.kaggle.com/datasets/mhskjelvareid/dagm-2007-competition-dataset-optical-inspection), "
            "then unpack each so that <root>/Class1/Train/Label/Labels.txt exists."
        ),
    ),
    "ksdd2": DatasetSource(
        name="ksdd2",
        title="KolektorSDD2 (Bozic et al., Computers in Industry 2021), 0.3 GB",
        homepage="https://www.vicos.si/resources/kolektorsdd2/",
        licence="CC BY-NC-SA 4.0 (see the KolektorSDD2 page): non-commercial research use only.",
        layout="<root>/{train,test}/NNNNN.png with NNNNN_GT.png",
        default_root="data/ksdd2",
        use="dataset=ksdd2 root={root}",
        url="http://go.vicos.si/kolektorsdd2",
    ),
    "dtd": DatasetSource(
        name="dtd",
        title="Describable Textures Dataset r1.0.1 (Cimpoi et al., CVPR 2014), 0.6 GB",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/dtd/",
        licence="Made available for research purposes by the Oxford VGG group; images come from Flickr.",
        layout="<root>/images/<texture class>/<class>_NNNN.jpg",
        default_root="data/dtd",
        use="generation.dtd_dir={root}/images",
        url="https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
        md5="fff73e5086ae6bdbea199a49dfb8a4c1",
        archive_subdir="dtd",
    ),
}


def describe(source: DatasetSource, root: Path) -> str:
    """What the user needs to know before using the data: terms, layout, how to point prn at it."""
    lines = [
        source.title,
        f"  homepage: {source.homepage}",
        f"  licence:  {source.licence}",
        f"  layout:   {source.layout}",
        f"  use:      {source.use.format(root=root)}",
    ]
    if source.manual_steps:
        lines.append(f"  get it:   {source.manual_steps}")
    return "\n".join(lines)


def download(
    name: str,
    root: str | Path | None = None,
    *,
    sources: Mapping[str, DatasetSource] = SOURCES,
    retries: int = 3,
    retry_wait: float = 5.0,
    log: Callable[[str], None] = print,
) -> Path:
    """Download, verify and unpack dataset ``name`` into ``root``; return ``root``.

    Raises :class:`DownloadError` for a manual-only dataset (with the instructions), a
    non-empty ``root``, a failed transfer, a checksum mismatch or a bad archive.
    """
    if name not in sources:
        raise DownloadError(f"unknown dataset {name!r}; choose one of {sorted(sources)}.")
    source = sources[name]
    target = Path(root if root is not None else source.default_root).expanduser()
    log(describe(source, target))
    if source.url is None:
        raise DownloadError(f"{source.name} cannot be downloaded automatically; follow 'get it' above.")
    download_archive(
        source.url,
        target,
        sha256=source.sha256,
        md5=source.md5,
        archive_subdir=source.archive_subdir,
        retries=retries,
        retry_wait=retry_wait,
        log=log,
    )
    log(f"done: {target}\n  next: {source.use.format(root=target)}")
    return target


def download_archive(
    url: str,
    target: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    archive_subdir: str | None = None,
    retries: int = 3,
    retry_wait: float = 5.0,
    log: Callable[[str], None] = print,
) -> Path:
    """Fetch ``url``, verify it, unpack it and move the tree to ``target`` (which must be empty or absent)."""
    refuse_non_empty(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.download-"))
    try:
        archive = staging / "archive"
        fetch(url, archive, retries=retries, retry_wait=retry_wait, log=log)
        verify_checksum(archive, sha256=sha256, md5=md5, log=log)
        extracted = staging / "extracted"
        extract_archive(archive, extracted)
        _move_into_place(dataset_tree(extracted, archive_subdir), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def refuse_non_empty(target: Path) -> None:
    """Never overwrite: ``target`` must not exist, or be an empty folder."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DownloadError(
            f"--root {target} already exists and is not empty; refusing to overwrite it. Pick another --root or delete it first."
        )


def fetch(
    url: str, destination: Path, *, retries: int = 3, retry_wait: float = 5.0, log: Callable[[str], None] = print
) -> None:
    """Stream ``url`` to ``destination``; on any failure start again from zero, ``retries`` times in all."""
    if retries < 1:
        raise DownloadError(f"retries={retries} must be >= 1.")
    for attempt in range(1, retries + 1):
        try:
            _stream(url, destination)
            return
        except (OSError, http.client.HTTPException, DownloadError) as error:
            destination.unlink(missing_ok=True)
            if attempt == retries:
                message = (
                    f"downloading {url} failed after {retries} attempt(s): {error}. Check the connection and retry."
                )
                raise DownloadError(message) from error
            log(
                f"attempt {attempt}/{retries} failed ({error}); retrying from the start in {retry_wait * attempt:.0f} s"
            )
            time.sleep(retry_wait * attempt)


def _stream(url: str, destination: Path) -> None:
    """One attempt; a body shorter than its announced ``Content-Length`` is a failure."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response, destination.open("wb") as output:
        announced = response.headers.get("Content-Length")
        received = 0
        while chunk := response.read(CHUNK_BYTES):
            output.write(chunk)
            received += len(chunk)
    if announced is not None and received != int(announced):
        raise DownloadError(f"transfer cut short: received {received} of {announced} bytes")


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of ``path``, read in chunks so multi-GB archives need no memory."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(
    path: Path, *, sha256: str | None = None, md5: str | None = None, log: Callable[[str], None] = print
) -> None:
    """Compare against every pinned digest; say so plainly when none is pinned."""
    pinned = [(algorithm, expected) for algorithm, expected in (("sha256", sha256), ("md5", md5)) if expected]
    if not pinned:
        log(f"checksum not pinned for this archive: sha256 {file_digest(path, 'sha256')} (not verified)")
        return
    for algorithm, expected in pinned:
        actual = file_digest(path, algorithm)
        if actual.lower() != expected.lower():
            raise DownloadError(
                f"{algorithm} of the downloaded archive is {actual}, expected {expected}: the file is corrupt or "
                "changed upstream. Nothing was unpacked; retry, and if it persists compare with the dataset's homepage."
            )
    log("checksum ok: " + ", ".join(algorithm for algorithm, _ in pinned))


def extract_archive(archive: Path, destination: Path) -> None:
    """Unpack a zip or tar (gz/bz2/xz) archive; members that would land outside ``destination`` are refused."""
    destination.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, destination)
    elif tarfile.is_tarfile(archive):
        _extract_tar(archive, destination)
    else:
        raise DownloadError(
            f"{archive} is neither a zip nor a tar archive; the server may have returned an error page."
        )


def _extract_zip(archive: Path, destination: Path) -> None:
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.namelist():
            _check_member_path(member)
        bundle.extractall(destination)


def _extract_tar(archive: Path, destination: Path) -> None:
    try:
        with tarfile.open(archive) as bundle:
            for member in bundle.getnames():
                _check_member_path(member)
            bundle.extractall(destination, filter="data")
    except tarfile.TarError as error:
        raise DownloadError(f"cannot unpack {archive}: {error}") from error


def _check_member_path(member: str) -> None:
    path = PurePosixPath(member.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise DownloadError(
            f"archive member {member!r} would be written outside the target folder; refusing to unpack."
        )


def dataset_tree(extracted: Path, archive_subdir: str | None) -> Path:
    """The folder that becomes ``root``: ``archive_subdir`` if present, else a lone top-level folder, else everything."""
    if archive_subdir and (extracted / archive_subdir).is_dir():
        return extracted / archive_subdir
    entries = [path for path in extracted.iterdir() if not path.name.startswith(("__MACOSX", "."))]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return extracted


def _move_into_place(tree: Path, target: Path) -> None:
    refuse_non_empty(target)
    if target.exists():
        target.rmdir()
    os.replace(tree, target)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit 0 on success, 2 when the dataset must be fetched by hand, 1 on errors."""
    parser = argparse.ArgumentParser(prog="python -m prn.data.download", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(SOURCES), help="dataset to fetch")
    parser.add_argument(
        "--root", type=Path, default=None, help="folder to create (default: data/<dataset>); must be empty or absent"
    )
    parser.add_argument("--retries", type=int, default=3, help="attempts before giving up (each starts from zero)")
    args = parser.parse_args(argv)
    if SOURCES[args.name].url is None:
        print(describe(SOURCES[args.name], args.root or Path(SOURCES[args.name].default_root)))
        return 2
    try:
        download(args.name, args.root, retries=args.retries)
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
