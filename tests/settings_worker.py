"""Settings for Celery workers that tests start: the project's, on the test database.

A worker process started by a test must read and write the same rows the test sees.
"""

from partnerportal.settings import *  # noqa: F403
from partnerportal.settings import DATABASES

DATABASES["default"]["NAME"] = DATABASES["default"]["TEST"]["NAME"]
