#!/usr/bin/env bash
# Brings a fresh machine to the point where manage.py runs: Debian packages, virtualenv, Python packages.
# Idempotent and quick when nothing changed (requirements are re-installed only when requirements.txt changes).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${FEDERATION_VENV:-.venv}
PYTHON=${PYTHON:-python3}
# python-ldap compiles against libldap/libsasl; xmlsec against libxmlsec1; the xmlsec1 program is what pysaml2 (a test
# peer) signs and verifies with; slapd + ldap-utils run the LDAP
# test directory; chromium drives the browser tests (Debian's build, never a downloaded one).
DEBIAN_PACKAGES="libldap2-dev libsasl2-dev libxmlsec1-dev xmlsec1 pkg-config slapd ldap-utils chromium wrk"

missing=""
for pkg in $DEBIAN_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends $missing >/dev/null
  else
    echo "bootstrap: missing Debian packages; run: sudo apt-get install -y$missing" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing requirements.txt"
  "$VENV/bin/pip" install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/pip" install -q -r requirements.txt 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -c "import django, ldap, xmlsec, lxml, celery" || { echo "bootstrap: requirements did not install" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
mkdir -p var
