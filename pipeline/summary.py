"""The one-screen summary printed at the end of `python -m pipeline run`."""

from __future__ import annotations

from typing import Any


def print_summary(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"news-etl run {result['run_id']}", show_header=False)
    table.add_row("files seen", str(result["files_seen"]))
    table.add_row("events published", str(result["events"]))
    table.add_row("rejected", str(result["rejected"]))
    table.add_row("files read this run", str(result["files_read"]))
    table.add_row(
        "events added / changed / removed",
        f"{result['events_added']} / {result['events_changed']} / {result['events_removed']}",
    )
    table.add_row("not published, by reason", "")
    for reason, count in result["not_published_by_reason"].items():
        table.add_row(f"  {reason}", str(count))
    table.add_row("duplicates", str(result["duplicates"]))
    table.add_row("quarantined lines", str(result["quarantined"]))
    table.add_row("validation", "passed" if result["validation_passed"] else "FAILED")
    table.add_row("catalog", result["catalog"])
    table.add_row("parquet", result["current"])
    table.add_row("validation report", str(result["data_docs"] or result["validation_report"]))
    console = Console()
    console.print(table)
    for line in result["warnings"]:
        print(f"warning: {line}")
