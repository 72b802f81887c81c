"""Named API keys in process: the keys file, the store's owner column and its migration, the owner rule in SQL,
and the anonymised listing as TaskSchema documents it (the real server: tests/test_named_keys.py)."""

from __future__ import annotations

import sqlite3

import pytest

from api import create_app
from api.tasks.presenters import task_of
from api.tasks.schemas import TaskSchema
from core.errors import TaskNotFound
from core.keys import ApiKey, KeysFileError, Role, parse_keys
from core.submissions import Caller, GenerationRequest
from taskqueue import store as store_module
from taskqueue.store import TaskStore

ALICE = Caller(client="key:alice", admin=False, owner="alice", max_waiting=1)
BOB = Caller(client="key:bob", admin=False, owner="bob")
REQUEST = GenerationRequest(prompt="a private prompt", width=256, height=256, steps=2)


def test_a_keys_file_gives_names_roles_and_caps():
    keys = parse_keys(
        {"keys": {"alice": {"key": "a" * 16, "max_waiting": 3}, "ops": {"key": "o" * 20, "role": "admin"}}}
    )
    assert keys == (ApiKey("alice", "a" * 16, Role.USER, 3), ApiKey("ops", "o" * 20, Role.ADMIN))
    assert "a" * 16 not in repr(keys)  # never in a log line or a traceback


@pytest.mark.parametrize(
    ("data", "problem"),
    [({}, "expected a table 'keys'"), ({"keys": {"api-key": {"key": "x" * 16}}}, "is not a key name"),
     ({"keys": {"a b": {"key": "x" * 16}}}, "is not a key name"), ({"keys": {"a": {"key": "short"}}}, "at least 16"),
     ({"keys": {"a": {"key": "x" * 16, "role": "root"}}}, "role must be"),
     ({"keys": {"a": {"key": "x" * 16, "max_waiting": 0}}}, "max_waiting"),
     ({"keys": {"a": {"key": "x" * 16, "colour": 1}}}, "expected key, role"),
     ({"keys": {"a": {"key": "x" * 16}, "b": {"key": "x" * 16}}}, "the same secret")],
)  # fmt: skip
def test_a_keys_file_with_a_problem_is_refused_without_echoing_a_secret(data, problem):
    with pytest.raises(KeysFileError, match=problem) as error:
        parse_keys(data)
    assert "x" * 16 not in str(error.value)


def test_a_version_4_database_gains_the_owner_column_and_its_tasks_belong_to_no_key(tmp_path):
    path = tmp_path / "tasks.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(store_module._SCHEMA)
    for version in (2, 3, 4):
        db.executescript(f"BEGIN;\n{store_module._MIGRATIONS[version]}\nPRAGMA user_version = {version};\nCOMMIT;")
    db.execute("CREATE INDEX tasks_waiting_variants ON tasks (priority, variant) WHERE status = 'waiting'")
    db.execute(
        "INSERT INTO tasks (id, status, prompt, seed, width, height, steps, guidance, format, quality, engine, "
        "submitted_at) VALUES ('00000000000000aa', 'waiting', 'old', 1, 64, 64, 1, 1.0, 'JPEG', 90, 'demo', 0)"
    )
    db.close()
    store = TaskStore(path)
    try:
        assert store._read().execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION == 6
        indexes = {row[0] for row in store._read().execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "tasks_waiting_variants" not in indexes  # version 6 drops it
        assert store.get("00000000000000aa").owner == ""
        assert [t.id for t in store.listed(["waiting"], 10, 0, owner="alice")[0]] == ["00000000000000aa"]
    finally:
        store.close()


def test_a_user_key_lists_the_queue_anonymised_and_only_its_own_finished_tasks(service):
    mine = service.submit(REQUEST, ALICE).task.id
    theirs = service.submit(REQUEST, BOB).task.id
    gone = service.submit(REQUEST, BOB).task.id
    service.cancel(gone, BOB)
    views, total = service.listed(caller=ALICE)
    assert [(v.task.id, v.anonymous) for v in views] == [(mine, False), (theirs, True)] and total == 2
    for view in views:
        shown = task_of(view)
        assert TaskSchema().dump(shown) == shown
    assert task_of(views[1])["task_id"] is None and task_of(views[1])["prompt"] is None
    assert [v.anonymous for v in service.listed()[0]] == [False, False, False]  # an admin: everything
    for lookup in (service.task, service.status, service.preview, service.cancel):
        with pytest.raises(TaskNotFound):
            lookup(theirs, ALICE)
    with pytest.raises(TaskNotFound):
        service.image(theirs, caller=ALICE)
    assert [t.id for t in service.clear(ALICE)] == [mine]
    assert service.task(theirs).status.value == "waiting"


def test_a_keys_own_cap_and_the_servers_per_client_cap(service):
    service.submit(REQUEST, ALICE)
    with pytest.raises(Exception, match="You have 1 tasks waiting"):
        service.submit(REQUEST, ALICE)
    service.submit(REQUEST, BOB)
    service.submit(REQUEST, BOB)  # bob has no cap of his own: the server's (1000)


def test_the_fast_status_path_steps_aside_for_named_keys(service):
    task_id = service.submit(REQUEST, ALICE).task.id
    keys = (ApiKey("alice", "alice-key-0123456789", Role.USER), ApiKey("bob", "bob-key-01234567890", Role.USER))
    client = create_app({"TESTING": True, "MFLUX_API_KEYS": keys}, service=service).test_client()
    url = f"/api/status?task_id={task_id}"
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"Authorization": "Bearer bob-key-01234567890"}).status_code == 404
    assert client.get(url, headers={"Authorization": "Bearer alice-key-0123456789"}).json["task_id"] == task_id
