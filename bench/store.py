"""The run store: one folder per resolved configuration, written atomically, with a `done` marker last.

    <root>/<dataset>/<method>/<hash>/config.json   the resolved configuration (what the hash is of)
                                     checkpoint.pt while running (resume point; removed when done)
                                     record.json   the result record
                                     done          written last; a folder without it is not a result

A finished run is redone only with --force, in a sibling `<hash>.redo` folder that replaces the old one only
once it is complete, so an interrupted redo never loses the stored result.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.config import canonical_json, config_hash
from bench.errors import BenchError
from bench.registry import check_name
from bench.results.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from bench.results.record import RunRecord
from bench.results.schema import RecordError, load, validate


def check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".probe.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise BenchError(f"cannot write to the run store {root} ({exc.strerror or exc}); pass --out DIR with a folder you can write to")


@dataclass
class RunFolder:
    final: Path
    work: Path

    @property
    def checkpoint(self) -> Path:
        return self.work / "checkpoint.pt"


class RunStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, config: dict) -> Path:
        check_name("dataset", config["dataset"])
        check_name("method", config["method"])
        path = self.root / config["dataset"] / config["method"] / config_hash(config)
        if not path.resolve().is_relative_to(self.root.resolve()):  # defence in depth: names are checked above
            raise BenchError(f"run folder {path} would lie outside the store {self.root}")
        return path

    @staticmethod
    def is_done(path: Path) -> bool:
        return (path / "done").is_file() and (path / "record.json").is_file()

    def load_record(self, path: Path) -> dict:
        try:
            return load(path / "record.json")
        except RecordError as exc:
            raise BenchError(f"run record {exc}; delete that run folder and re-run")

    def begin(self, config: dict, force: bool) -> RunFolder:
        """Prepare the folder a run works in. Resumes an interrupted run unless `force` asks for a fresh start."""
        final = self.path_for(config)
        if self.is_done(final):
            work = final.with_name(final.name + ".redo")
            shutil.rmtree(work, ignore_errors=True)
        else:
            work = final
            if force:
                shutil.rmtree(work, ignore_errors=True)
            config_file = work / "config.json"
            if config_file.exists() and config_file.read_text().strip() != _config_text(config).strip():
                raise BenchError(f"run folder {work} holds a different configuration; delete it or use another --out")
        work.mkdir(parents=True, exist_ok=True)
        atomic_write_text(work / "config.json", _config_text(config))
        return RunFolder(final=final, work=work)

    def lock_for(self, final: Path):
        """The lock one run of a configuration holds from planning to its record (released if its process dies).
        Lock files live under <root>/.locks/, not beside the run folders: a lock file cannot be deleted safely
        while another process may be waiting on it, so it stays, out of sight."""
        from filelock import FileLock

        path = self.root / ".locks" / final.relative_to(self.root).with_name(final.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path))

    def recover(self, final: Path) -> None:
        """Complete or undo a --force redo that was interrupted (e.g. killed between its two renames), and remove
        the side folders it left. Call with the configuration's lock held."""
        old, redo = final.with_name(final.name + ".old"), final.with_name(final.name + ".redo")
        if not final.exists():
            if self.is_done(redo):
                os.replace(redo, final)  # the new result was complete: finish the swap
            elif old.is_dir():
                os.replace(old, final)  # the old result comes back
        if self.is_done(final):
            shutil.rmtree(old, ignore_errors=True)
            if redo.exists() and not (redo / "checkpoint.pt").is_file():
                shutil.rmtree(redo, ignore_errors=True)

    def recover_all(self) -> None:
        """Recover every interrupted redo whose lock is free (the leaderboard calls this before it reads)."""
        from filelock import Timeout

        for side in sorted({*self.root.glob("*/*/*.old"), *self.root.glob("*/*/*.redo")}):
            final = side.with_name(side.name.rsplit(".", 1)[0])
            try:
                with self.lock_for(final).acquire(timeout=0):
                    self.recover(final)
            except Timeout:
                continue  # a run is finishing it right now

    def discard(self, folder: RunFolder, unconditionally: bool = False) -> bool:
        """Remove the work folder of a run that failed, when it holds nothing to resume from (no checkpoint, no
        search files) or `unconditionally`; a finished result in the final folder is never touched."""
        work = folder.work
        if not work.is_dir() or (work == folder.final and self.is_done(work)):
            return False
        keep = [p for p in work.rglob("*") if p.is_file() and p.name not in ("config.json",) and not p.name.startswith(".")]
        if keep and not unconditionally:
            return False
        shutil.rmtree(work, ignore_errors=True)
        return True

    def finish(self, folder: RunFolder, record: dict, files: dict[str, bytes] | None = None) -> Path:
        """Write the record (and its side files, e.g. per-example predictions), then `done` last."""
        validate(record, "the new record")  # written against the schema, or not at all
        for name, blob in (files or {}).items():
            atomic_write_bytes(folder.work / name, blob)
        atomic_write_json(folder.work / "record.json", record)
        folder.checkpoint.unlink(missing_ok=True)
        atomic_write_text(folder.work / "done", "")
        if folder.work != folder.final:
            old = folder.final.with_name(folder.final.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder.final, old)
            os.replace(folder.work, folder.final)
            shutil.rmtree(old, ignore_errors=True)
        return folder.final

    def records(self) -> list[RunRecord]:
        return self.scan()[0]

    def scan(self) -> tuple[list[RunRecord], list[tuple[str, str]]]:
        """Every finished record under the root in a stable order (migrated to the current schema, validated), and
        (path, reason) for each finished run whose record fails: reported, never dropped silently."""
        records, problems = [], []
        if not self.root.exists():
            return records, problems
        for done in sorted(self.root.rglob("done")):
            folder = done.parent
            if folder.name.endswith((".redo", ".old")) or not done.is_file():  # a `done` folder is no marker
                continue
            where = str(folder.relative_to(self.root))
            try:
                record = RunRecord.from_valid(load(folder / "record.json"), path=where)  # load validated it
            except RecordError as exc:
                problems.append((where, exc.reason))
                continue
            records.append(record)
        return records, problems

    def incomplete(self) -> list[Path]:
        return sorted(p.parent for p in self.root.rglob("config.json") if not self.is_done(p.parent))


def _config_text(config: dict) -> str:
    return json.dumps(json.loads(canonical_json(config)), indent=1, sort_keys=True) + "\n"
