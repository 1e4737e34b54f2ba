"""`countersign demo` runs the whole flow by itself, as a newcomer would run it, and finishes quickly."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bot.demo.text import card_to_text, mrkdwn_to_text


def test_demo_shows_the_whole_flow_and_finishes_by_itself(tmp_path: object) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "COUNTERSIGN_", "DATABASE_URL"))
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "from bot.cli.main import main; main()", "demo"],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=str(tmp_path),
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for expected in (
        "APPROVAL NEEDED: SCALE CHECKOUT-API FROM 12 TO 8 PODS",  # the card, as text
        "[ Approve ]  [ Override ]",
        "Why the AI did this",
        "Confidence: 82%",
        "CPU, last 3h (https://grafana.example.com/d/cpu?svc=checkout)",
        "Escalates to secondary (@Dana)",  # dana@example.com, resolved by email
        "@Eve Elsewhere clicks [ Approve ]",
        "Automatic brake: `agent:deployer@search`",  # chapter 5: the brake, the resume, the grant
        "mode approve, paused by countersign: automatic brake: 2 overrides within 1h",
        "Resumed `agent:deployer@search`",
        "Promotion granted by @Vic VP",
        "the next scale_down runs under the grant: mode acknowledge (was approve)",
        "You are not paged for action 1",  # a stranger is refused
        "@Olive Owner clicks [ Approve ]  (signed request: HTTP 200",
        "APPROVED: SCALE CHECKOUT-API",
        "approved by @Olive Owner",  # the card, updated in place
        "X-Countersign-Signature verified ✔",  # the agent got the signed decision
        "a modal asks for the reason",
        "DENIED: ROLL CHECKOUT-API BACK",
        "Reason: the errors come from a payment provider outage",
        "[ Acknowledge ]  [ Override ]",
        "ACKNOWLEDGED: RESTARTED SEARCH-INDEXER",
        "RECORDED (AUTONOMOUS)",
        "403, policy forbids drop_database",
        "REFUSED BY POLICY",
        "ACCOUNTABLE: olive U0OWNER — approved, explicit, level owner, via button",
        "ACCOUNTABLE: sam U0SRE — acknowledged, explicit",
        "reason: the errors come from a payment provider outage, not from v2.15.0",
    ):
        assert expected in out, expected
    assert "INVALID" not in out and "Traceback" not in done.stderr
    assert took < 45, f"the demo took {took:.1f}s"  # seconds on an idle machine; generous under load
    assert not list(os.scandir(str(tmp_path)))  # it leaves nothing behind in the working directory


def test_terminal_rendering_of_mrkdwn() -> None:
    names = {"U1": "Olive", "C1": "ops"}
    text = (
        "<@U1> in <#C1>: *bold* _it_ <https://x.example/a|dash> &lt;b&gt; <!date^1700000000^{time}|12:00 UTC>"
    )
    assert mrkdwn_to_text(text, names) == "@Olive in #ops: bold it dash (https://x.example/a) <b> 12:00 UTC"
    boxed = card_to_text(
        {
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": ":raised_hand: Approval needed"}},
                {
                    "type": "actions",
                    "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Approve"}}],
                },
            ]
        },
        names,
    )
    assert "✋ APPROVAL NEEDED" in boxed and "[ Approve ]" in boxed
