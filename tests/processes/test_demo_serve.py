"""`countersign demo --serve`, as a newcomer would use it: it prints one action's page link and keeps
serving; a person opens the link, reads the story and approves there; the cards and the agent's
signed callback follow; Ctrl-C ends it cleanly."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

pytestmark = pytest.mark.processes


def _line(proc: subprocess.Popen[str], pattern: str, within: float = 60.0) -> str:
    deadline = time.monotonic() + within
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise AssertionError(f"the demo ended (exit {proc.returncode}) before printing {pattern!r}")
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no line matching {pattern!r}")


def test_demo_serve_prints_a_page_link_and_a_person_approves_there(tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "COUNTERSIGN_", "DATABASE_URL"))}
    proc = subprocess.Popen([sys.executable, "-c", "from bot.cli.main import main; main()", "demo", "--serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(tmp_path))
    try:
        link = _line(proc, r"^\s+http://127\.0\.0\.1:\d+/a/\d+\?").strip()
        _line(proc, "Serving until Ctrl-C")
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        page = browser.open(link, timeout=10).read().decode()
        for part in ("Roll checkout-api back to v2.14.0", "p99 latency doubled", "anthropic claude-sonnet 2026-01",
                     "paged <strong>owner</strong>", "Olive Owner (U0OWNER)", "✔ verified", 'id="form-approve"'):
            assert part in page, part
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token
        form = urllib.parse.urlencode({"csrf": token.group(1), "response": "approve", "reason": "read it all"})
        after = browser.open(link, data=form.encode(), timeout=10).read().decode()
        assert "Approved: recorded" in after
        _line(proc, r"decided in the browser: approved by U0OWNER \(via web\)")
        _line(proc, r"chat\.update on every copy of the card")
        _line(proc, r"agent ← POST .* approved by U0OWNER \(explicit, via web\); X-Countersign-Signature verified")
        assert proc.poll() is None, "the demo must keep serving until Ctrl-C"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
