"""Settings for the partner portal, read from the environment (django-environ).

Development defaults exist only where they are safe. With DEBUG=False (production) every
secret and every production-only value must be given, or start-up stops with a message
that names the missing variable. `.env.example` lists every variable.
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    """A boolean variable; anything but a clear yes/no is an error, not False."""
    raw = env.str(name, default=None)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a boolean: use one of true/false, yes/no, on/off, 1/0."
    )


def required(name: str, hint: str) -> str:
    """A value production cannot start without."""
    value = env.str(name, default="").strip()
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set. It is required when DEBUG is off: {hint}"
        )
    return value


# --- Core -----------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-" + "x" * 40)
    ALLOWED_HOSTS = env.list(
        "ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"]
    )
else:
    SECRET_KEY = required(
        "SECRET_KEY", "a long random string, e.g. `openssl rand -hex 32`."
    )
    ALLOWED_HOSTS = [
        h.strip()
        for h in required("ALLOWED_HOSTS", "comma-separated host names.").split(",")
        if h.strip()
    ]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Configuration only; installed for its migrations (StaffIdentity's history).
    "partnerportal",
    # Our apps, each with one job; imports point down this list (docs/architecture.md).
    "core",
    "accounts",
    "tenants",
    "alerts",
    "sync",
    # Development only: the demo commands, embedded servers and emulator wiring.
    *(["demo"] if DEBUG else []),
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "partnerportal.middleware.ContentSecurityPolicyMiddleware",
    "partnerportal.middleware.QueryGuardMiddleware",
]

ROOT_URLCONF = "partnerportal.urls"
WSGI_APPLICATION = "partnerportal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.alarms",
                "accounts.context_processors.sign_in",
            ],
        },
    },
]

# --- Data stores ----------------------------------------------------------------------

if DEBUG:
    DATABASES = {
        "default": env.db_url("DATABASE_URL", default="postgres:///partnerportal")
    }
else:
    DATABASES = {
        "default": env.db_url_config(
            required("DATABASE_URL", "postgres://user:password@host:5432/dbname")
        )
    }
# Tests run against their own database; two test runs on one server can pick two names.
DATABASES["default"]["TEST"] = {
    "NAME": env.str(
        "DATABASE_TEST_NAME", default=f"test_{DATABASES['default']['NAME']}"
    )
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        "DATABASE_URL must point at PostgreSQL (postgres://...)."
    )

if DEBUG:
    REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
else:
    REDIS_URL = required("REDIS_URL", "redis://host:6379/0")

# Short-lived shared values (the queue's severity counts); keys name the database.
CACHES = {
    "default": {
        "BACKEND": "partnerportal.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "portal",
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth and security ----------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/queue"  # the analyst's day starts at the queue
LOGOUT_REDIRECT_URL = "login"

# Behind a TLS-terminating proxy in production; every cookie is Secure there.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 12 * 3600
# Kept in PostgreSQL, read through Redis; Redis being away costs speed only.
SESSION_ENGINE = "accounts.sessions"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Internationalisation and static files --------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# The portal speaks English only: no translation machinery on every page and form.
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Where collectstatic writes and, in production, where WhiteNoise serves from.
STATIC_ROOT = Path(
    env.str("STATIC_ROOT", default="").strip() or BASE_DIR / "staticfiles"
)
# Production serves STATIC_ROOT as collectstatic left it: hashed names (cached for
# good, as a changed file gets a new name) with gzip copies, and a page naming a file
# missing from the manifest is an error, not a silent 404. Development and the tests
# keep plain names read straight from STATICFILES_DIRS, so they need no collectstatic;
# hence the storage follows DEBUG rather than being set once.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# WhiteNoise would take these two from DEBUG when it starts, but pytest has turned DEBUG
# off by then; like the storage they follow the environment's DEBUG: development and
# tests serve the files in STATICFILES_DIRS as they are edited.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Microsoft ------------------------------------------------------------------------

# MS_EMULATOR routes the portal to our own emulator (demo, tests); a deploy check
# (partnerportal/checks.py) refuses it in production.
MS_EMULATOR = env_bool("MS_EMULATOR", False)
MS_LOGIN_URL = env.str("MS_LOGIN_URL", default="https://login.microsoftonline.com")
MS_DEFENDER_URL = env.str(
    "MS_DEFENDER_URL", default="https://api.security.microsoft.com"
)
MS_GRAPH_URL = env.str("MS_GRAPH_URL", default="https://graph.microsoft.com")
# A CA bundle to trust for Microsoft hosts (the emulator's CA); empty = system store.
MS_CA_BUNDLE = env.str("MS_CA_BUNDLE", default="")
MS_EMULATOR_CONTROL_TOKEN = env.str("MS_EMULATOR_CONTROL_TOKEN", default="")
# The MSSP's own Entra tenant: "Sign in with Microsoft" accepts only its staff (the
# token's issuer and tid must name exactly this tenant). Empty: the button is hidden.
MS_STAFF_TENANT_ID = env.str("MS_STAFF_TENANT_ID", default="").strip().lower()

if DEBUG:
    MS_CLIENT_ID = env.str("MS_CLIENT_ID", default="")
    PORTAL_BASE_URL = env.str("PORTAL_BASE_URL", default="http://127.0.0.1:8000")
else:
    MS_CLIENT_ID = required(
        "MS_CLIENT_ID", "the partner app's application (client) id."
    )
    PORTAL_BASE_URL = required(
        "PORTAL_BASE_URL",
        "the portal's public https URL (builds the consent redirect).",
    )
MS_CLIENT_SECRET = env.str("MS_CLIENT_SECRET", default="")
# One PEM file holding the private key and the certificate (recommended over a secret).
MS_CLIENT_CERT_PATH = env.str("MS_CLIENT_CERT_PATH", default="")
if not DEBUG and not (MS_CLIENT_SECRET or MS_CLIENT_CERT_PATH):
    raise ImproperlyConfigured(
        "MS_CLIENT_SECRET or MS_CLIENT_CERT_PATH is not set. It is required when DEBUG "
        "is off: the partner app's credential (a certificate PEM path is recommended)."
    )
PORTAL_BASE_URL = PORTAL_BASE_URL.rstrip("/")

# --- Onboarding -----------------------------------------------------------------------

# Seconds between verification attempts while a fresh consent replicates at Microsoft.
TENANT_VERIFY_RETRY_SECONDS = env.int("TENANT_VERIFY_RETRY_SECONDS", default=15)

# --- Sync -----------------------------------------------------------------------------

# Seconds between two syncs of one (tenant, source).
SYNC_INTERVAL_SECONDS = env.int("SYNC_INTERVAL_SECONDS", default=60)
# Each run re-reads this many seconds before its cursor (late-indexed changes).
SYNC_OVERLAP_SECONDS = env.int("SYNC_OVERLAP_SECONDS", default=300)
# How far back the first sync of a source reaches.
SYNC_BACKFILL_DAYS = env.int("SYNC_BACKFILL_DAYS", default=30)
# Items asked for per page (each API's own maximum caps it).
SYNC_PAGE_SIZE = env.int("SYNC_PAGE_SIZE", default=1000)
# Pages one run may fetch; more pages mean another run right after (if it saved rows).
SYNC_MAX_PAGES_PER_RUN = env.int("SYNC_MAX_PAGES_PER_RUN", default=20)
# How long a run's claim on (tenant, source) lasts; renewed after every page.
SYNC_LEASE_SECONDS = env.int("SYNC_LEASE_SECONDS", default=120)
# How often beat looks for due syncs, and how many it queues at most per look.
SYNC_DISPATCH_SECONDS = env.int("SYNC_DISPATCH_SECONDS", default=5)
SYNC_DISPATCH_BATCH = env.int("SYNC_DISPATCH_BATCH", default=2000)
# Graph incidents with their alerts ($expand=alerts); off where Graph answers 500s.
SYNC_GRAPH_INCIDENTS_EXPAND_ALERTS = env_bool(
    "SYNC_GRAPH_INCIDENTS_EXPAND_ALERTS", True
)
# The Defender portal the alert and incident links point to (sovereign clouds differ).
MS_SECURITY_PORTAL_URL = env.str(
    "MS_SECURITY_PORTAL_URL", default="https://security.microsoft.com"
).rstrip("/")

# --- Celery ---------------------------------------------------------------------------

# Redis redelivers an unacknowledged task after the visibility timeout; every time limit
# and countdown stays well under it so a slow task is never run twice at once.
CELERY_VISIBILITY_TIMEOUT = 3600
CELERY_BROKER_URL = REDIS_URL
# The queue tasks go to and workers read; separate deployments (or a benchmark) that
# share one Redis give each their own.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="celery")
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = timedelta(hours=1)
CELERY_TASK_TIME_LIMIT = 600
CELERY_TASK_SOFT_TIME_LIMIT = 540
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = False
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "record-beat-heartbeat": {
        "task": "partnerportal.tasks.record_beat_heartbeat",
        "schedule": 15.0,
        "options": {"expires": 14},
    },
    "dispatch-due-syncs": {
        "task": "tenants.tasks.dispatch_due_syncs",
        "schedule": float(SYNC_DISPATCH_SECONDS),
        "options": {"expires": max(1.0, SYNC_DISPATCH_SECONDS - 1.0)},
    },
}

# --- Logging --------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    },
    "filters": {"redact": {"()": "partnerportal.logfilters.RedactSecrets"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # msal logs whole token responses at DEBUG; never let that reach a log.
        "msal": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # runserver's request lines carry the consent callback's query string.
        "django.server": {"handlers": ["console"], "propagate": False},
    },
}
