"""The partner portal project: settings, Celery app, URLs."""

from partnerportal.celery import app as celery_app

__all__ = ["celery_app"]
