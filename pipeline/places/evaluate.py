"""Precision and recall of event_places over a labelled set (tests/places/portal_events.tsv):
`python -m pipeline.places.evaluate [FILE] [--misses]`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.places.match import event_places


@dataclass
class Labelled:
    title: str
    summary: str
    contexts: list[str]
    expected: set[str]


@dataclass
class Score:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    events: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        expected = self.true_positives + self.false_negatives
        return self.true_positives / expected if expected else 1.0


def load(path: Path) -> list[Labelled]:
    """Tab-separated: title, summary, contexts (` | `-separated), expected codes (spaces)."""
    events = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 4:
            raise ValueError(f"{path}:{number}: expected 4 tab-separated fields, found {len(parts)}")
        title, summary, contexts, codes = parts
        events.append(
            Labelled(
                title, summary, [c.strip() for c in contexts.split("|") if c.strip()], set(codes.split())
            )
        )
    return events


def score(events: list[Labelled]) -> Score:
    """(event, country) pairs found against those labelled."""
    result = Score(events=len(events))
    for event in events:
        found = {code for code, _, _ in event_places(event.title, event.summary, event.contexts)}
        result.true_positives += len(found & event.expected)
        result.false_positives += len(found - event.expected)
        result.false_negatives += len(event.expected - found)
        if found != event.expected:
            extra, missing = sorted(found - event.expected), sorted(event.expected - found)
            result.misses.append(f"{event.title} | +{extra} -{missing}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[2] / "tests" / "places" / "portal_events.tsv"
    parser.add_argument("file", nargs="?", type=Path, default=default)
    parser.add_argument("--misses", action="store_true", help="list the events found wrongly")
    args = parser.parse_args(argv)
    result = score(load(args.file))
    if args.misses:
        print("\n".join(result.misses))
    print(
        f"{result.events} events: precision {result.precision:.3f}, recall {result.recall:.3f} "
        f"(tp {result.true_positives}, fp {result.false_positives}, fn {result.false_negatives})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
