#!/bin/sh
# Install crmbridge from this offline bundle into a new virtual environment; needs no network access.
#
#   ./install.sh VENV [postgres] [distributed]
#
# VENV: the virtual environment to create (e.g. /opt/crmbridge/venv); extras as in `pip install crmbridge[...]`.
# PYTHON: the interpreter to create it with (default python3; CPython 3.11 or 3.12 on Linux x86_64).
# The postgres extra (psycopg 3) needs the system's libpq (Debian/Ubuntu: libpq5, RHEL: libpq).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 1 ]; then
  echo "usage: $0 VENV [postgres] [distributed]" >&2
  exit 64
fi
venv=$1
shift
postgres=""
distributed=""
for extra in "$@"; do
  case $extra in
    postgres) postgres=-postgres ;;
    distributed) distributed=-distributed ;;
    *) echo "unknown extra '$extra' (postgres, distributed)" >&2; exit 64 ;;
  esac
done
requirements=$here/requirements$distributed$postgres.txt

echo "checking the bundle's checksums" >&2
(cd "$here" && sha256sum --check --quiet --strict SHA256SUMS)

"${PYTHON:-python3}" -m venv "$venv"
pip() { PIP_CONFIG_FILE=/dev/null "$venv/bin/python" -m pip --disable-pip-version-check --no-input "$@"; }
# every dependency from the lock, each wheel checked against its locked hash
pip install --quiet --no-index --find-links "$here/wheels" --require-hashes --no-deps -r "$requirements"
# crmbridge itself (its checksum is in SHA256SUMS, checked above)
pip install --quiet --no-index --find-links "$here/wheels" --no-deps "$here"/wheels/crmbridge-*.whl
pip check
"$venv/bin/crmbridge" --version
