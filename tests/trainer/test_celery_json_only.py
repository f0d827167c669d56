"""The training workers' Celery app accepts JSON only: a pickled task message, the
classic way to run code on a worker, is refused before anything is unpickled."""

from __future__ import annotations

import pickle

import pytest
from kombu.exceptions import ContentDisallowed
from kombu.serialization import dumps, loads, prepare_accept_content

from interns.trainer.celery_app import make_celery


class Exploit:
    """Unpickling this would run code; the worker must never get that far."""

    ran = False

    def __reduce__(self):
        return (setattr, (Exploit, "ran", True))


@pytest.fixture
def app():
    return make_celery("memory://")


def test_json_is_the_only_serializer(app):
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]
    assert list(app.conf.result_accept_content) == ["json"]


def test_a_pickled_message_is_refused_before_it_is_unpickled(app):
    body = pickle.dumps(((Exploit(),), {}, {}))
    with pytest.raises(ContentDisallowed):
        loads(
            body,
            "application/x-python-serialize",
            "binary",
            accept=prepare_accept_content(app.conf.accept_content),
        )
    assert not Exploit.ran
    # The same message is code the moment anything unpickles it.
    pickle.loads(body)
    assert Exploit.ran


def test_a_json_message_is_accepted(app):
    content_type, encoding, body = dumps([["task-1"], {}, {}], serializer=app.conf.task_serializer)
    assert loads(
        body, content_type, encoding, accept=prepare_accept_content(app.conf.accept_content)
    ) == [
        ["task-1"],
        {},
        {},
    ]
