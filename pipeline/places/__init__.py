"""Places: the countries each event mentions (contract section 5)."""

from pipeline.places.match import event_places

__all__ = ["event_places"]
