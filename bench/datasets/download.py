"""Download, verify and install one item of the sources table, safely.

Order of work: refuse what cannot succeed before writing anything (target already there, too little free disk);
fetch into <root>/.bench-downloads/<archive>.part with HTTP range requests (an interrupted transfer resumes, in the
same call and in a later one); check size and sha256 before anything is extracted; extract into a scratch folder of
the data root and rename the finished folder into place, so a half-extracted folder never looks like a dataset.
A source that fails (unreachable, HTTP error, wrong size or checksum) is said in one line and the next one is tried.
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.datasets.cards import CARDS
from bench.datasets.sources import Item, Source
from bench.errors import BenchError

CHUNK = 1 << 20
RETRIES = 3  # resumed attempts per source after an interrupted transfer
TIMEOUT_S = 30.0
PARTS = ".bench-downloads"


class SourceFailed(Exception):
    """This source cannot deliver the archive now; `network`: it could not be reached at all; `resumable`: the
    transfer stopped part-way and its partial file is kept to resume from."""

    def __init__(self, message: str, network: bool = False, resumable: bool = False):
        super().__init__(message)
        self.network, self.resumable = network, resumable


@dataclass
class Installed:
    item: str
    folder: Path
    source: str
    receipt: Path


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def receipt_path(root: Path, item: str) -> Path:
    return root / CARDS / f"{item}.source.json"  # beside the data cards


def _drop_token_across_hosts():
    class Redirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
                new.remove_header("Authorization")  # a Hub token never goes to the CDN host it redirects to
            return new

    return urllib.request.build_opener(Redirect)


def _headers(source: Source) -> dict[str, str]:
    if source.kind != "hf":
        return {"User-Agent": "bench-data-download"}
    from huggingface_hub.utils import build_hf_headers

    return dict(build_hf_headers())  # user agent and, where the user is logged in, the token (gated mirrors)


def _network_reason(exc: BaseException) -> str | None:
    """A short reason when `exc` means the host could not be reached at all (DNS, refused, unreachable, timeout)."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "the connection timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
        return "the network is unreachable"
    return None


def _total(response) -> int | None:
    """The file's full size as the server states it (Content-Range of a 206, else Content-Length)."""
    if response.status == 206:
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


class _Bar:
    """A progress bar made only once bytes flow (a source that fails before that prints nothing but its line)."""

    def __init__(self, progress, label: str):
        self.progress, self.label, self.task = progress, label, None

    def start(self, done: int, total: int | None) -> None:
        if self.progress is None:
            return
        if self.task is None:
            self.task = self.progress.add_task(self.label, total=total)
        self.progress.update(self.task, completed=done, total=total)

    def advance(self, n: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)


def transfer(url: str, part: Path, size: int | None, headers: dict, bar: _Bar | None = None) -> int:
    """Bring `part` to the whole file from `url` (`size` bytes where pinned), resuming from what it holds; returns
    the size reached. SourceFailed on any failure (a partial file is kept to resume from)."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    if size is not None and have == size:
        return size
    request = urllib.request.Request(url, headers={**headers, **({"Range": f"bytes={have}-"} if have else {})})
    try:
        response = _drop_token_across_hosts().open(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the server refuses our range: start this file again
            part.unlink()
            return transfer(url, part, size, headers, bar)
        raise SourceFailed(f"HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        network = _network_reason(exc)
        raise SourceFailed(network or f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}", network=bool(network))
    with response:
        if have and response.status != 206:
            have = 0  # no range support: the whole file comes again
        elif have:
            start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start != str(have):
                raise SourceFailed(f"the server resumed at byte {start or '?'} instead of {have}")
        total = _total(response)
        expected = size if size is not None else total
        if size is not None and total is not None and total != size:
            raise SourceFailed(f"the server offers {total} bytes, the pinned size is {size}: not the pinned archive")
        bar = bar or _Bar(None, "")
        bar.start(have, expected)
        part.parent.mkdir(parents=True, exist_ok=True)  # the first write: the data root may not exist before
        try:
            with open(part, "ab" if have else "wb") as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    bar.advance(len(chunk))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise BenchError(f"the disk of {part.parent} is full; free space and run the command again (it resumes)")
        except http.client.HTTPException:
            pass  # an interrupted transfer: the caller resumes from what arrived
    got = part.stat().st_size
    if expected is not None and got < expected:
        raise SourceFailed(f"transfer stopped at {human(got)} of {human(expected)}", resumable=True)
    if expected is not None and got > expected:
        part.unlink()
        raise SourceFailed(f"the server sent {got} bytes, more than the {expected} it announced (removed)")
    return got


def sha256_of(path: Path, progress=None, label: str = "") -> str:
    digest = hashlib.sha256()
    task = progress.add_task(label, total=path.stat().st_size) if progress is not None else None
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            if task is not None:
                progress.advance(task, len(chunk))
    return digest.hexdigest()


def _fetch(item: Item, source: Source, parts: Path, progress, allow_unpinned: bool) -> tuple[Path, str]:
    """The verified archive of `source` in `parts` and its sha256, or SourceFailed (a bad archive is removed)."""
    if not source.pinned and not allow_unpinned:
        raise SourceFailed("no pinned sha256 (nobody publishes one); pass --allow-unpinned to accept what it serves "
                           "(its sha256 then goes into the download receipt and the data card)")
    if source.kind == "hf" and os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise SourceFailed("HF_HUB_OFFLINE is set; unset it to download from the Hub", network=True)
    url = source.resolve()
    part = parts / f"{item.name}-{source.name}-{(source.sha256 or 'unpinned')[:12]}-{source.archive_name}.part"
    bar = _Bar(progress, f"{item.name} from {source.name}")
    for attempt in range(RETRIES + 1):
        try:
            transfer(url, part, source.size, _headers(source), bar)
            break
        except SourceFailed as exc:
            if not exc.resumable or attempt == RETRIES:
                raise
            time.sleep(0.5 * 2 ** attempt)
    found = sha256_of(part, progress, f"checking {source.archive_name}")
    if source.pinned and found != source.sha256:
        part.unlink()
        raise SourceFailed(f"sha256 {found[:16]}... is not the pinned {source.sha256[:16]}...: a corrupted or "
                           "different archive (removed)")
    return part, found


def _safe_members(archive: tarfile.TarFile, into: Path):
    for member in archive.getmembers():
        target = (into / member.name).resolve()
        if not target.is_relative_to(into.resolve()) or member.issym() or member.islnk() or member.isdev():
            raise BenchError(f"the archive holds {member.name!r}, which would land outside its folder or is a link; "
                             "refused (nothing installed)")
        yield member


def _extract(archive: Path, fmt: str, into: Path, progress=None) -> None:
    into.mkdir(parents=True)
    if fmt == "zip":
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if not (into / name).resolve().is_relative_to(into.resolve()):
                    raise BenchError(f"the archive holds {name!r}, which would land outside its folder; refused")
            z.extractall(into)
        return
    with tarfile.open(archive, "r:*") as t:
        members = list(_safe_members(t, into))
        task = progress.add_task(f"extracting {archive.name.removesuffix('.part')}", total=len(members)) if progress else None
        for member in members:
            t.extract(member, into, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
            if task is not None:
                progress.advance(task)


def _locate(scratch: Path, item: Item) -> Path:
    """The extracted folder holding the marker: the scratch folder itself, or the one folder of that name in it."""
    leaf = Path(item.folder).name
    for candidate in (scratch / leaf, scratch):
        if (candidate / item.marker).exists():
            return candidate
    raise BenchError(f"the archive does not hold {item.folder}/{item.marker}; it is not {item.name} (nothing installed)")


def plan(item: Item, root: Path, archive_size: int) -> Path:
    """Checks before anything is written; returns the target folder."""
    target = root / item.folder
    if target.exists():
        raise BenchError(f"{target} already exists; `bench data verify {item.dataset} --data-root {root}` checks it "
                         "(remove the folder to download it again)")
    parts = root / PARTS
    free = shutil.disk_usage(next(p for p in (root, *root.absolute().parents) if p.exists())).free
    have = max((p.stat().st_size for p in parts.glob(f"{item.name}-*.part")), default=0) if parts.is_dir() else 0
    need = max(archive_size - have, 0) + item.unpacked_size
    if free < need:
        raise BenchError(f"not enough free space in {root}: {item.name} needs {human(need)} (archive and extracted "
                         f"files), {human(free)} free; free space or pass another --data-root")
    return target


def install(item: Item, root: Path, archive: Path, source: str, sha256: str, progress=None,
            pinned: bool = True) -> Installed:
    """Extract a verified archive into a scratch folder of `root`, then rename the folder into place."""
    target = root / item.folder
    scratch = root / f".bench-extract-{item.name}"
    shutil.rmtree(scratch, ignore_errors=True)  # what an earlier, interrupted extraction left
    try:
        _extract(archive, item.format, scratch, progress)
        found = _locate(scratch, item)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(found, target)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise BenchError(f"the archive of {item.name} does not extract ({type(exc).__name__}: {exc}); nothing installed")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    receipt = receipt_path(root, item.name)
    receipt.parent.mkdir(parents=True, exist_ok=True)
    receipt.write_text(json.dumps({"item": item.name, "dataset": item.dataset, "folder": item.folder, "source": source,
                                   "archive_sha256": sha256, "pinned": pinned, "installed": datetime.now(timezone.utc).isoformat(
                                       timespec="seconds")}, indent=1) + "\n")
    return Installed(item.name, target, source, receipt)


def download(item: Item, root: Path, only: str | None = None, keep_archive: bool = False, progress=None,
             say=print, allow_unpinned: bool = False) -> Installed:
    """Try the item's sources in order (or only `only`), install the first verified archive."""
    sources = [item.source(only)] if only else list(item.sources)
    plan(item, root, max(s.expected_bytes for s in sources))
    parts = root / PARTS
    failed: list[tuple[Source, SourceFailed]] = []
    for source in sources:
        try:
            archive, sha256 = _fetch(item, source, parts, progress, allow_unpinned)
        except SourceFailed as exc:
            failed.append((source, exc))
            say(f"{item.name}: source {source.name} failed: {exc}" + ("; trying the next" if source is not sources[-1] else ""))
            continue
        installed = install(item, root, archive, source.name, sha256, progress, pinned=source.pinned)
        if not keep_archive:
            archive.unlink()
        if parts.is_dir() and not any(parts.iterdir()):
            parts.rmdir()
        return installed
    if parts.is_dir() and not any(parts.iterdir()):
        parts.rmdir()
    if all(exc.network for _, exc in failed):
        raise BenchError(f"no network: none of {item.name}'s sources can be reached ("
                         + "; ".join(f"{s.name}: {e}" for s, e in failed) + "); connect, or fetch the archive "
                         f"elsewhere and run `bench data download {item.name} --from-archive FILE`")
    resumable = [s.name for s, e in failed if e.resumable]
    raise BenchError(f"every source of {item.name} failed (" + "; ".join(f"{s.name}: {e}" for s, e in failed) + ")"
                     + ("; run the same command again to resume" if resumable else
                        f"; try later, or fetch the archive by hand and pass --from-archive FILE"))


def from_archive(item: Item, root: Path, archive: Path, progress=None, allow_unpinned: bool = False) -> Installed:
    """Install a copy the user fetched by hand: its sha256 must be one the table pins for this item, unless
    `allow_unpinned` (then the copy's own sha256 is recorded, and the card says it was not pinned)."""
    if not archive.is_file():
        raise BenchError(f"--from-archive {archive} is not a file; pass the downloaded archive")
    size = archive.stat().st_size
    plan(item, root, 0)
    known = {s.sha256: s for s in item.sources if s.pinned and s.size == size}
    if not known and not allow_unpinned:
        sizes = ", ".join(f"{s.name} {s.size}" for s in item.sources if s.pinned) or "none"
        raise BenchError(f"{archive} has {size} bytes; {item.name}'s pinned archives: {sizes}; not a known copy "
                         "(pass --allow-unpinned to install it as is, its sha256 recorded)")
    found = sha256_of(archive, progress, f"checking {archive.name}")
    if found not in known and not allow_unpinned:
        raise BenchError(f"{archive} has sha256 {found[:16]}..., not a pinned archive of {item.name}: a corrupted or "
                         "different copy; download it again")
    origin = f"archive {archive.name}" + (f" (= {known[found].name})" if found in known else " (unpinned)")
    return install(item, root, archive, origin, found, progress, pinned=found in known)
