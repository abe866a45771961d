"""A real Celery worker runs tasks from the real Redis broker."""

import os
import time

from core import tasks


def test_a_real_worker_runs_a_task_through_the_redis_broker(celery_worker_process):
    sent_at = time.time()
    result = tasks.canary.delay(sent_at)
    answer = result.get(timeout=20)
    assert answer["sent_at"] == sent_at
    assert answer["answered_at"] >= sent_at
    assert celery_worker_process.process.pid != os.getpid()


def test_tasks_travel_as_json_only():
    from partnerportal.celery import app

    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert (
        app.conf.task_time_limit
        < app.conf.broker_transport_options["visibility_timeout"]
    )
