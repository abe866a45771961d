"""The Celery app. Configuration lives in settings.py under CELERY_*."""

import gc
import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "partnerportal.settings")

app = Celery("partnerportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

#: Python's garbage collector runs after this many new container objects (its default
#: is 700); see `collect_less_often`.
GC_THRESHOLD = 10_000


@worker_process_init.connect
def collect_less_often(**_kwargs) -> None:
    """A sync parses pages of thousands of alerts, each a tree of dicts and lists.
    At Python's defaults the cycle collector ran hundreds of times a page, and every
    few pages it walked all the objects the worker had loaded at start as well:
    about a sixth of a worker's CPU in `bench/ingest.py`. What is loaded by now is
    frozen out of every collection, and collections come 14 times less often. The
    pages themselves are freed by reference counting either way; the collector is
    only for cycles, which stay rare."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
