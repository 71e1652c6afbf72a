"""Where each downloadable dataset comes from: an ordered list of sources per item, each pinning the archive's size
and sha256 (bench/datasets/tables/sources.json; a user's own table, e.g. a lab mirror, is added with --sources).

An item is what one archive installs: a whole dataset (iwildcam, fmow) or one component of a dataset (imagenet-v2,
one folder of the imagenet dataset). Sources are tried in the table's order; every source of an item must name the
folder it installs and a marker file that only a complete copy has, so a half-made folder never looks like data.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError

TABLE = Path(__file__).parent / "tables" / "sources.json"
KINDS = ("http", "hf")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Source:
    name: str = ""
    kind: str = "http"  # "http": a plain URL; "hf": a file of a Hugging Face Hub repository (URL and token via huggingface_hub)
    size: int | None = None  # bytes of the archive; None where nobody publishes it (an "unpinned" source)
    sha256: str | None = None  # None: unpinned, used only with --allow-unpinned (its sha256 is then recorded)
    url: str = ""
    repo: str = ""
    file: str = ""
    revision: str = "main"
    repo_type: str = "dataset"
    endpoint: str | None = None  # another Hub endpoint (default: huggingface_hub's, i.e. HF_ENDPOINT)
    approx_size: int | None = None  # an unpinned source's size as its publisher states it (for the disk check)
    note: str = ""

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None

    @property
    def expected_bytes(self) -> int:
        return self.size or self.approx_size or 0

    def resolve(self) -> str:
        if self.kind == "http":
            return self.url
        from huggingface_hub import hf_hub_url

        return hf_hub_url(self.repo, self.file, repo_type=self.repo_type, revision=self.revision, endpoint=self.endpoint)

    @property
    def archive_name(self) -> str:
        return Path(self.file or self.url.split("?")[0].rstrip("/")).name or f"{self.name}.archive"


@dataclass(frozen=True)
class Item:
    name: str
    dataset: str  # the dataset adapter this item belongs to
    folder: str  # where it goes, relative to the data root
    marker: str  # a path inside `folder` only a complete copy has
    format: str  # "tar" (any compression) or "zip"
    unpacked_size: int  # bytes on disk once extracted (checked against the free space before starting)
    sources: tuple[Source, ...] = field(default_factory=tuple)
    note: str = ""

    def source(self, name: str) -> Source:
        for s in self.sources:
            if s.name == name:
                return s
        raise BenchError(f"{self.name} has no source {name!r}; its sources: {', '.join(s.name for s in self.sources)}")


def _require(entry: dict, key: str, where: str, kind=str):
    value = entry.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) or (kind is str and not value):
        raise BenchError(f"{where}: '{key}' must be a {'non-empty string' if kind is str else kind.__name__}; fix the sources table")
    return value


def _source(entry: dict, where: str) -> Source:
    name = _require(entry, "name", where)
    where = f"{where} source {name!r}"
    kind = _require(entry, "kind", where)
    if kind not in KINDS:
        raise BenchError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}; fix the sources table")
    sha, size = entry.get("sha256"), entry.get("size")
    if (sha is None) != (size is None):
        raise BenchError(f"{where}: pin both sha256 and size, or neither (an unpinned source)")
    if sha is not None:
        sha = _require(entry, "sha256", where).lower()
        if not _SHA256.match(sha):
            raise BenchError(f"{where}: sha256 {sha!r} is not 64 hex digits; pin the archive's real checksum")
        if _require(entry, "size", where, int) <= 0:
            raise BenchError(f"{where}: size must be the archive's byte count (> 0)")
    if kind == "http" and not str(entry.get("url", "")).startswith(("http://", "https://")):
        raise BenchError(f"{where}: an http source needs a url starting with http:// or https://")
    if kind == "hf":
        _require(entry, "repo", where), _require(entry, "file", where)
    known = {f for f in Source.__dataclass_fields__}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise BenchError(f"{where}: unknown key {unknown[0]!r}; keys: {', '.join(sorted(known))}")
    return Source(**{**entry, "sha256": sha})  # sha256 lower-cased


def parse(table: dict, where: str) -> dict[str, Item]:
    if not isinstance(table.get("items"), dict):
        raise BenchError(f"{where}: expected an object with 'items' (item name -> item); see bench/datasets/tables/sources.json")
    items = {}
    for name, entry in table["items"].items():
        at = f"{where} item {name!r}"
        if not isinstance(entry, dict):
            raise BenchError(f"{at}: expected an object")
        sources = entry.get("sources")
        if not isinstance(sources, list) or not sources:
            raise BenchError(f"{at}: 'sources' must be a non-empty list")
        fmt = _require(entry, "format", at)
        if fmt not in ("tar", "zip"):
            raise BenchError(f"{at}: format {fmt!r} is not tar or zip")
        folder = _require(entry, "folder", at)
        if Path(folder).is_absolute() or ".." in Path(folder).parts:
            raise BenchError(f"{at}: folder {folder!r} must be a relative path inside the data root")
        items[name] = Item(name, _require(entry, "dataset", at), folder, _require(entry, "marker", at), fmt,
                           _require(entry, "unpacked_size", at, int), tuple(_source(s, at) for s in sources),
                           entry.get("note", ""))
    return items


def load(extra: Path | None = None) -> dict[str, Item]:
    """The shipped table; with `extra` (a user's JSON table of the same form), its items and sources come first:
    an item it names keeps the shipped sources after the user's own."""
    items = parse(json.loads(TABLE.read_text()), str(TABLE))
    if extra is None:
        return items
    try:
        table = json.loads(Path(extra).read_text())
    except OSError as exc:
        raise BenchError(f"cannot read the sources table {extra} ({exc.strerror or exc}); pass an existing JSON file")
    except json.JSONDecodeError as exc:
        raise BenchError(f"sources table {extra} is not valid JSON ({exc.msg} at line {exc.lineno})")
    for name, item in parse(table, str(extra)).items():
        shipped = items.get(name)
        names = {s.name for s in item.sources}
        kept = tuple(s for s in shipped.sources if s.name not in names) if shipped else ()
        items[name] = Item(**{**item.__dict__, "sources": item.sources + kept})
    return items


def item(name: str, items: dict[str, Item]) -> Item:
    if name in items:
        return items[name]
    import difflib

    close = difflib.get_close_matches(name, list(items), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise BenchError(f"bench cannot download {name!r}; {hint}downloadable: {', '.join(items)} "
                     f"(others: `bench data check {name}` says where the files go)")
