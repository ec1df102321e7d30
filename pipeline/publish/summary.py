"""The summary printed at the end of `python -m pipeline run` (full paths, never cut to the
terminal's width; `--json` prints the same result as JSON instead)."""

from __future__ import annotations

from typing import Any


def summary_lines(result: dict[str, Any]) -> list[str]:
    rows: list[tuple[str, str]] = []
    if result.get("outcome") == "unchanged":
        rows.append(
            ("outcome", f"no change since publication {result.get('current_run_id')}: nothing published")
        )
    rows += [
        ("files seen", str(result["files_seen"])),
        ("events published", str(result["events"])),
        ("rejected", str(result["rejected"])),
        ("files read this run", str(result["files_read"])),
        (
            "events added / changed / removed",
            f"{result['events_added']} / {result['events_changed']} / {result['events_removed']}",
        ),
    ]
    if result["not_published_by_reason"]:
        rows.append(("not published, by reason", ""))
        rows += [(f"  {reason}", str(n)) for reason, n in result["not_published_by_reason"].items()]
    rows += [
        ("duplicates", str(result["duplicates"])),
        ("quarantined lines", str(result["quarantined"])),
        ("validation", {True: "passed", False: "FAILED", None: "not run"}[result["validation_passed"]]),
        ("catalog", result["catalog"]),
        ("parquet", result["current"]),
        ("run report (HTML)", str(result["report"] or "not written (see the warning)")),
    ]
    if result.get("data_docs") or result.get("validation_report"):
        rows.append(("validation report", str(result.get("data_docs") or result["validation_report"])))
    width = max(len(label) for label, _ in rows)
    lines = [f"news-etl run {result['run_id']}"]
    lines += [f"  {label:<{width}}  {value}".rstrip() for label, value in rows]
    lines += [f"warning: {line.removeprefix('[warning] ')}" for line in result["warnings"]]
    return lines


def print_summary(result: dict[str, Any]) -> None:
    print("\n".join(summary_lines(result)))
