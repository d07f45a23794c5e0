"""Django settings for federation.

Every deployment-specific value comes from an environment variable named FEDERATION_*; the
table in README.md lists them. With none set, the product runs on its embedded defaults:
SQLite and a file-system Celery broker under ./var, secrets generated once into ./var.
"""

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FEDERATION_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env(name, default=None):
    return os.environ.get(f"FEDERATION_{name}", default)


def env_bool(name, default=False):
    value = env(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_list(name, default=""):
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def _generated_secret(filename):
    """A secret made once per embedded installation and kept under var/ (never committed)."""
    path = VAR_DIR / filename
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", False)
PRODUCTION = env_bool("PRODUCTION", False)

SECRET_KEY = env("SECRET_KEY") or _generated_secret("secret_key")
# Private keys, LDAP bind passwords and back-channel passwords are sealed with a key derived
# from this secret; FEDERATION_KEY_ENCRYPTION_OLD_SECRETS lists retired ones for `manage.py rekey`.
KEY_ENCRYPTION_SECRET = env("KEY_ENCRYPTION_SECRET") or _generated_secret("key_encryption_secret")
KEY_ENCRYPTION_OLD_SECRETS = env_list("KEY_ENCRYPTION_OLD_SECRETS")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "federation",
    "entities",
    "partnerships",
]

MIDDLEWARE = [
    "federation.tracing.TransactionMiddleware",
    # Runtime views (/affwebservices/…) leave the stack here, keeping the security headers (runtime_middleware.py).
    "federation.runtime_middleware.RuntimeViewMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "federation.roles.ReadOnlyAuditorMiddleware",
    "federation.audit.AuditActorMiddleware",
]

ROOT_URLCONF = "federation.urls"
WSGI_APPLICATION = "federation.wsgi.application"

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
                "federation.roles.console_context",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'federation.sqlite3'}"),
        conn_max_age=int(env("DATABASE_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The web process, the worker and beat share one SQLite file in the embedded mode.
    # WAL lets readers run beside the one writer; synchronous=NORMAL is still crash-safe in WAL mode and makes each
    # small commit (a replay-cache entry, a session) cheap.
    # Connections are kept like PostgreSQL's (FEDERATION_DATABASE_CONN_MAX_AGE): opening one per request, and with WAL
    # the checkpoint when the last one closes, cost more than a sign-on's own work.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "federation_cache"}}

AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
# Console login against LDAP (django-auth-ldap) is switched on by FEDERATION_CONSOLE_LDAP_URI.
CONSOLE_LDAP_URI = env("CONSOLE_LDAP_URI")
# CA bundle (PEM) trusted for LDAPS/StartTLS user directories; empty = the system store.
DIRECTORY_TLS_CA_FILE = env("DIRECTORY_TLS_CA_FILE", "")
if CONSOLE_LDAP_URI:
    from federation.console_ldap import configure_console_ldap

    configure_console_ldap(globals(), env)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# Outside production whitenoise also serves straight from the app folders, so the console is styled
# even when collectstatic has not run (production serves the hashed, compressed collected files).
WHITENOISE_USE_FINDERS = not PRODUCTION
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Cookies and transport security: strict in production, relaxed for the http://localhost demo.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SECURE_HSTS_SECONDS = int(env("HSTS_SECONDS", "31536000"))
    SECURE_SSL_REDIRECT = env_bool("SSL_REDIRECT", False)
    if env_bool("BEHIND_TLS_PROXY", True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_AGE = int(env("CONSOLE_SESSION_SECONDS", str(8 * 3600)))
DATA_UPLOAD_MAX_MEMORY_SIZE = int(env("MAX_UPLOAD_BYTES", str(10 * 1024 * 1024)))

# Celery: a broker that needs no server by default (kombu's file-system transport under var/).
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env("BROKER_URL", "filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("out", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "out"),
        "data_folder_out": str(BROKER_DIR / "out"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(BROKER_DIR / "control"),
        # The file-system transport polls; its default of 1 s makes every task wait up to a second.
        "polling_interval": 0.1,
    }
    # The file-system transport has no fan-out exchange, so no remote-control mailbox.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "certificate-expiry-check": {
        "task": "entities.tasks.check_certificate_expiry",
        "schedule": float(env("EXPIRY_CHECK_SECONDS", str(6 * 3600))),
    },
    "trace-retention": {
        "task": "federation.tasks.prune_trace_lines",
        "schedule": 3600.0,
    },
    # The runtime's shared state expires; these remove what is past its time.
    "replay-cache-sweep": {"task": "federation.tasks.sweep_replay_cache", "schedule": 300.0},
    "idp-state-sweep": {"task": "federation.tasks.sweep_idp_runtime_state", "schedule": 300.0},
    "sp-state-sweep": {"task": "federation.tasks.sweep_sp_state", "schedule": 300.0},
    "slo-state-sweep": {"task": "federation.tasks.sweep_slo_state", "schedule": 300.0},
    "metadata-refresh": {
        "task": "entities.tasks.refresh_metadata_sources",
        "schedule": float(env("METADATA_REFRESH_CHECK_SECONDS", "600")),
    },
}
# Replay cache of accepted assertion IDs (federation/replay.py): "database" (default) or "redis" (needs REDIS_URL).
REPLAY_CACHE_BACKEND = env("REPLAY_CACHE_BACKEND", "database")
REPLAY_CACHE_REDIS_PREFIX = env("REPLAY_CACHE_REDIS_PREFIX", "federation:replay:")

# Metadata import: largest upload or download accepted, and the CA bundle for https sources (empty: system's).
METADATA_MAX_UPLOAD_BYTES = int(env("METADATA_MAX_UPLOAD_BYTES", str(512 * 1024 * 1024)))
METADATA_CA_BUNDLE = env("METADATA_CA_BUNDLE", "")

# Certificate expiry warnings, in days before not-after.
CERTIFICATE_EXPIRY_WARNING_DAYS = [int(d) for d in env_list("EXPIRY_WARNING_DAYS", "90,30,7")]
# Every service URL of entities (base URL, endpoints, WS-Fed URLs) must be https://.
FEDERATION_REQUIRE_HTTPS = env_bool("REQUIRE_HTTPS", False)
TRACE_RETENTION_DAYS = int(env("TRACE_RETENTION_DAYS", "14"))
# Seconds a web process gathers finished requests' trace lines before one background INSERT stores them (0: each
# request stores its own lines before it answers).
TRACE_FLUSH_SECONDS = float(env("TRACE_FLUSH_SECONDS", "0.5"))

# Logging: text or JSON lines, every line carries the transaction ID; federation's own lines with a
# transaction ID are also kept in the database for the console's transaction search.
LOG_FORMAT = env("LOG_FORMAT", "text")
LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"transaction": {"()": "federation.tracing.TransactionFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s [%(transaction_id)s] %(checkpoint)s %(name)s: %(message)s"},
        "json": {"()": "federation.tracing.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["transaction"],
            "formatter": "json" if LOG_FORMAT == "json" else "text",
        },
        "trace_store": {
            "class": "federation.tracing.TraceStoreHandler",
            "filters": ["transaction"],
            "level": "INFO",
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "federation": {"handlers": ["trace_store"], "level": LOG_LEVEL},
        "entities": {"handlers": ["trace_store"], "level": LOG_LEVEL},
        "partnerships": {"handlers": ["trace_store"], "level": LOG_LEVEL},
    },
}
CSRF_FAILURE_VIEW = "federation.views.errors.csrf_failure"
