"""Helpers of the ledger tests: the demo's size and the command line run in this process."""

from __future__ import annotations

import pytest

from crmbridge.cli.main import main

CUSTOMERS = 24
SEED = 11
NOTE = "ticket 4711"


def cli(capsys: pytest.CaptureFixture[str] | None, *argv: str) -> tuple[int, str]:
    """Run ``crmbridge ARGV`` in this process as the console script does: (exit code, stdout + stderr)."""
    code = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    if capsys is None:
        return code, ""
    out = capsys.readouterr()
    return code, out.out + out.err
