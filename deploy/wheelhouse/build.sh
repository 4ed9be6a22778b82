#!/usr/bin/env bash
# Build the offline bundle dist/crmbridge-VERSION-wheelhouse.tar.gz (docs/install.md, "Offline bundle"):
#   wheels/            crmbridge's wheel and a wheel of every locked dependency (core, postgres and distributed
#                      extras) for CPython 3.11 and 3.12 on Linux x86_64 (manylinux up to glibc 2.28)
#   requirements*.txt  the locked set with hashes, one file per choice of extras (exported from uv.lock)
#   uv.lock            the lock file they were exported from
#   install.sh         installs into a new virtual environment without any network access
#   SHA256SUMS         checksum of every file above (install.sh checks it first)
#
# Run from the repository root by `make wheelhouse`. Needs uv and build in the venv (the dev extra) and access to
# the package index (or a mirror: PIP_INDEX_URL) while it builds; the bundle itself then needs none.
# Environment: PYTHON (default .venv/bin/python), DIST (default dist), PY_VERSIONS (default "3.11 3.12").
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-.venv/bin/python}
DIST=${DIST:-dist}
PY_VERSIONS=${PY_VERSIONS:-3.11 3.12}
BIN=$(dirname "$PYTHON")
UV=${UV:-$BIN/uv}
VERSION=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
NAME=crmbridge-$VERSION-wheelhouse

mkdir -p "$DIST"
DIST=$(cd "$DIST" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/$NAME
mkdir -p "$STAGE/wheels"

echo "checking that uv.lock matches pyproject.toml" >&2
"$UV" lock --check --quiet

echo "exporting the locked requirements" >&2
export_set() {  # export_set FILE [--extra NAME]...
  local out=$1; shift
  "$UV" export --quiet --frozen --format requirements-txt --no-emit-project --no-header --no-dev "$@" -o "$STAGE/$out"
}
export_set requirements.txt
export_set requirements-postgres.txt --extra postgres
export_set requirements-distributed.txt --extra distributed
export_set requirements-distributed-postgres.txt --extra distributed --extra postgres

echo "building crmbridge's wheel" >&2
rm -rf build
"$PYTHON" -m build --wheel --no-isolation --outdir "$STAGE/wheels" . >"$WORK/build.log" 2>&1 \
  || { cat "$WORK/build.log" >&2; exit 1; }
rm -rf build

# pip download judges markers by the Python running it, so a marker that holds only on another patch release
# (async-timeout ; python_full_version < '3.11.3') would lose its wheel: keep every line whose marker holds on any
# supported target (CPython 3.11.0-3.12.x on Linux x86_64) with the marker removed, drop the others (Windows-only)
"$PYTHON" - "$STAGE/requirements-distributed-postgres.txt" "$WORK/download.txt" <<'PY'
import re
import sys

from packaging.markers import Marker

targets = [{"python_version": v[:4], "python_full_version": v, "sys_platform": "linux", "os_name": "posix",
            "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
            "platform_python_implementation": "CPython"} for v in ("3.11.0", "3.11.99", "3.12.0", "3.12.99")]
text = open(sys.argv[1]).read().replace("\\\n", " ")
out = []
for line in text.splitlines():
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    m = re.match(r"^(\S+==\S+)\s*(?:;\s*(.*?))?\s*((?:--hash=\S+\s*)+)$", line)
    if not m:
        sys.exit(f"cannot read the exported requirement: {line}")
    req, marker, hashes = m.groups()
    if marker is None or any(Marker(marker).evaluate(t) for t in targets):
        out.append(f"{req} {hashes.strip()}")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY

for py in $PY_VERSIONS; do
  echo "downloading the locked wheels for CPython $py" >&2
  abi=cp${py/./}
  # --no-deps: the export is the complete locked set; hashes are required since every line carries them
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$STAGE/wheels" \
    --implementation cp --python-version "$py" --abi "$abi" --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux2010_x86_64 --platform manylinux1_x86_64 --platform linux_x86_64 \
    -r "$WORK/download.txt"
done

cp uv.lock "$STAGE/uv.lock"
cp deploy/wheelhouse/install.sh "$STAGE/install.sh"
chmod 0755 "$STAGE/install.sh"
(cd "$STAGE" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)

OUT=$DIST/$NAME.tar.gz
tar -C "$WORK" --owner=0 --group=0 --numeric-owner -czf "$OUT" "$NAME"
echo "$OUT"
