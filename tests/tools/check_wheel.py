"""Check a built wheel ships exactly the crmbridge package: no tests/, bench/, build/ or stray top-level names."""

from __future__ import annotations

import sys
import zipfile

REQUIRED = [
    "crmbridge/__init__.py",
    "crmbridge/__main__.py",
    "crmbridge/py.typed",
    "crmbridge/adapters/base.py",
    "crmbridge/canonical/masking.py",
    "crmbridge/core/errors.py",
    "crmbridge/cli/main.py",
    "crmbridge/sync/state/db.py",
]


def main(path: str) -> int:
    names = zipfile.ZipFile(path).namelist()
    top = {n.split("/", 1)[0] for n in names}
    bad = sorted(t for t in top if t != "crmbridge" and not t.endswith(".dist-info"))
    missing = [r for r in REQUIRED if r not in names]
    strays = [n for n in names if n.startswith(("crmbridge/tests/", "crmbridge/bench/", "crmbridge/build/"))]
    for label, items in (("unexpected top-level entries", bad), ("missing files", missing), ("stray files", strays)):
        if items:
            print(f"{path}: {label}: {', '.join(items)}")
    if bad or missing or strays:
        return 1
    print(f"{path}: {len(names)} files, layout OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
