"""``crmbridge demo --serve``: after the demo's syncs, the console is served with one demo user per role whose
passwords are drawn for the run and printed; it serves the sign-in page, a printed sign-in works, and Ctrl-C
(SIGINT) stops it all. A real subprocess, as a person runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from console_world import csrf_of


def _run(workdir: Path) -> tuple[subprocess.Popen[str], list[str], threading.Thread]:
    proc = subprocess.Popen([sys.executable, "-m", "crmbridge", "demo", "--workdir", str(workdir), "--customers",
                             "20", "--serve", "--console-port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "160"},
                            cwd=workdir.parent)
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return proc, lines, reader


@pytest.mark.slow
def test_demo_serve_prints_the_console_and_its_sign_ins_serves_it_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    runs = []
    for n in (1, 2):
        proc, lines, reader = _run(tmp_path / f"demo{n}")
        try:
            deadline = time.monotonic() + 240
            url = None
            while url is None and time.monotonic() < deadline and proc.poll() is None:
                m = re.search(r"crmbridge console on (http://127\.0\.0\.1:\d+/)", "".join(lines))
                url = m.group(1) if m else None
                time.sleep(0.2)
            assert url, "".join(lines)[-3000:]
            out = "".join(lines)
            creds = dict(re.findall(r"^\W*(auditor|operator|steward|admin)\s+(\S+)\s+\(", out, re.M))
            assert set(creds) == {"auditor", "operator", "steward", "admin"}, out[-2000:]
            assert requests.get(f"{url}login", timeout=10).status_code == 200
            s = requests.Session()
            token = csrf_of(s.get(f"{url}login", timeout=10).text)
            r = s.post(f"{url}login", data={"username": "steward", "password": creds["steward"],
                                            "csrf_token": token}, allow_redirects=False, timeout=10)
            assert r.status_code == 303
            assert s.get(f"{url}requests", timeout=10).status_code == 200
            runs.append(creds)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            finally:
                reader.join(10)
                assert proc.stdout is not None
                proc.stdout.close()
        assert code == 0, "".join(lines)[-2000:]
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}login", timeout=5)
    # drawn per run, never fixed
    assert all(runs[0][k] != runs[1][k] for k in runs[0])
