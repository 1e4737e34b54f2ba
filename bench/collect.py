"""Assemble BENCHMARKS.md from bench/summary.md and each benchmark's bench/results/*.md.

    python -m bench.collect
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["bench_ingest", "bench_clicks", "bench_escalation", "bench_outbox", "bench_outbox_postgresql",
         "bench_queries", "bench_ledger", "decision_longpoll"]


def demote(text: str) -> str:
    """Each result file's title becomes a section; its sections become subsections."""
    lines = []
    for i, line in enumerate(text.splitlines()):
        if line.startswith("#"):
            line = "#" + line if i else "## " + line.lstrip("# ")
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parts = [(HERE / "summary.md").read_text().rstrip()]
    names = ORDER + sorted(p.stem for p in (HERE / "results").glob("*.md") if p.stem not in ORDER)
    for name in names:
        path = HERE / "results" / f"{name}.md"
        if path.exists():
            parts.append(demote(path.read_text()).rstrip())
    (HERE.parent / "BENCHMARKS.md").write_text("\n\n---\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
