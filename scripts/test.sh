#!/usr/bin/env bash
# Runs the whole suite (extra arguments go to pytest). Uses PostgreSQL and Redis when
# FEDERATION_DATABASE_URL / FEDERATION_BROKER_URL / FEDERATION_REDIS_URL are set, SQLite and the
# embedded broker otherwise. The tests start their own slapd on a loopback port (tests/slapd.py).
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${FEDERATION_VENV:-.venv}
export FEDERATION_VAR_DIR=${FEDERATION_VAR_DIR:-$PWD/var/test}
"$VENV/bin/python" -m pytest "$@"
status=$?
if [ "$status" = "5" ]; then
  echo "test.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$status"
