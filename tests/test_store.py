import json
import os

import pytest

from bench.errors import BenchError
from bench.store import RunStore, atomic_write_text, check_writable

CONFIG = {"dataset": "d", "method": "m", "seed": 0}


def test_round_trip_and_done_marker(tmp_path):
    store = RunStore(tmp_path)
    folder = store.begin(CONFIG, force=False)
    assert not store.is_done(folder.final)
    assert store.records() == []  # an unfinished folder is never a result
    assert store.incomplete() == [folder.final]
    store.finish(folder, {"x": 1})
    assert store.is_done(folder.final)
    assert store.load_record(folder.final) == {"x": 1}
    assert [r["x"] for r in store.records()] == [1]
    assert json.loads((folder.final / "config.json").read_text()) == CONFIG


def test_force_keeps_the_old_result_until_the_new_one_is_done(tmp_path):
    store = RunStore(tmp_path)
    first = store.begin(CONFIG, force=False)
    store.finish(first, {"v": "old"})
    redo = store.begin(CONFIG, force=True)
    assert redo.work != redo.final
    assert store.load_record(redo.final) == {"v": "old"}  # interrupted redo leaves the old result
    store.finish(redo, {"v": "new"})
    assert store.load_record(redo.final) == {"v": "new"}
    assert not redo.work.exists()
    assert [r["v"] for r in store.records()] == ["new"]


def test_folder_with_a_different_configuration_is_refused(tmp_path):
    store = RunStore(tmp_path)
    folder = store.begin(CONFIG, force=False)
    (folder.work / "config.json").write_text('{"other": 1}')
    with pytest.raises(BenchError, match="different configuration"):
        store.begin(CONFIG, force=False)


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "hello")
    atomic_write_text(target, "world")
    assert target.read_text() == "world"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_unwritable_store_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BenchError, match="cannot write to the run store"):
        check_writable(blocker / "runs")
