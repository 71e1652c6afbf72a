import json
import os

import pytest

from test_leaderboard import fake_record

from bench.errors import BenchError
from conftest import stored_records
from bench.store import RunStore, check_writable
from bench.results.io import atomic_write_text

CONFIG = {"dataset": "d", "method": "m", "seed": 0}


def rec(seed: int) -> dict:
    return fake_record("ft", seed, 70.0 + seed, [40.0] * 5)


def test_round_trip_and_done_marker(tmp_path):
    store = RunStore(tmp_path)
    folder = store.begin(CONFIG, force=False)
    assert not store.is_done(folder.final)
    assert stored_records(store) == []  # an unfinished folder is never a result
    assert store.incomplete() == [folder.final]
    store.finish(folder, rec(1))
    assert store.is_done(folder.final)
    assert store.load_record(folder.final) == rec(1)
    assert [r["seed"] for r in stored_records(store)] == [1]
    assert json.loads((folder.final / "config.json").read_text()) == CONFIG


def test_force_keeps_the_old_result_until_the_new_one_is_done(tmp_path):
    store = RunStore(tmp_path)
    first = store.begin(CONFIG, force=False)
    store.finish(first, rec(0))
    redo = store.begin(CONFIG, force=True)
    assert redo.work != redo.final
    assert store.load_record(redo.final) == rec(0)  # interrupted redo leaves the old result
    store.finish(redo, rec(2))
    assert store.load_record(redo.final) == rec(2)
    assert not redo.work.exists()
    assert [r["seed"] for r in stored_records(store)] == [2]


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


def test_a_record_that_breaks_the_schema_is_never_written(tmp_path):
    store = RunStore(tmp_path)
    folder = store.begin(CONFIG, force=False)
    bad = rec(0)
    del bad["summary"]["ood_avg"]
    with pytest.raises(BenchError, match="summary: 'ood_avg' is a required property"):
        store.finish(folder, bad)
    assert not (folder.work / "record.json").exists() and not store.is_done(folder.final)


@pytest.mark.parametrize("text,reason", [
    ("{}", "'schema' is a required property"),
    ('{"schema": 2, "run_id": ', "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
])
def test_store_reads_report_bad_records_by_path_and_reason(tmp_path, text, reason):
    store = RunStore(tmp_path)
    good = store.begin(CONFIG, force=False)
    store.finish(good, rec(0))
    broken = store.begin({**CONFIG, "seed": 1}, force=False)
    (broken.work / "record.json").write_text(text)
    (broken.work / "done").write_text("")
    records, problems = store.scan()
    assert [r.seed for r in records] == [0]  # the good one still counts
    assert len(problems) == 1 and problems[0][0] == str(broken.final.relative_to(tmp_path))
    assert reason in problems[0][1]
    with pytest.raises(BenchError, match="delete that run folder"):
        store.load_record(broken.final)


def test_version_1_records_are_migrated_on_read_and_by_the_command(tmp_path):
    from bench.results.schema import SCHEMA_VERSION, main, migrate

    v1 = rec(0)
    v1["schema"] = 1
    del v1["evaluation"]
    migrated = migrate(v1)
    assert migrated["schema"] == SCHEMA_VERSION == 3
    assert migrated["evaluation"] == {"variants": {"final": None}, "reported": "final"}
    store = RunStore(tmp_path)
    folder = store.begin(CONFIG, force=False)
    (folder.work / "record.json").write_text(json.dumps(v1))
    (folder.work / "done").write_text("")
    assert stored_records(store)[0]["evaluation"] == migrated["evaluation"]  # in memory, the file untouched
    assert json.loads((folder.work / "record.json").read_text())["schema"] == 1
    assert main(["migrate", str(tmp_path)]) == 0
    assert json.loads((folder.work / "record.json").read_text())["schema"] == 3


def test_a_reported_variant_that_differs_from_the_planned_one_fails_validation():
    from bench.results.schema import problems

    record = rec(0)
    record["reported_variant"] = "alpha=0.5"
    assert any("reported_variant" in p for p in problems(record))


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "X", "", ".hidden"])
def test_names_that_are_not_folder_names_are_refused(tmp_path, name):
    with pytest.raises(BenchError, match="not allowed"):
        RunStore(tmp_path / "runs").path_for({**CONFIG, "method": name})
    assert not (tmp_path / "x").exists()
