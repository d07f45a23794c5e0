"""Running `manage.py` as a real process on the embedded defaults (SQLite and secrets under a
var folder of its own), for tests of the CLI and of `runall`."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def embedded_env(var_dir):
    """The process environment with no FEDERATION_* setting but the var folder: the embedded defaults
    (SQLite at <var>/federation.sqlite3, the file-system broker, secrets generated into <var>)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDERATION_")}
    env.update(
        FEDERATION_VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="federation.settings",
    )
    return env


def manage(env, *args, timeout=240, **kwargs):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, **kwargs
    )


def migrated_env(var_dir, **extra):
    """embedded_env(var_dir) plus `extra`, with the database migrated."""
    env = {**embedded_env(var_dir), **extra}
    done = manage(env, "migrate", "--noinput", "-v", "0")
    assert done.returncode == 0, done.stderr
    done = manage(env, "createcachetable")  # as `make run` does: the database cache the runtime uses
    assert done.returncode == 0, done.stderr
    return env
