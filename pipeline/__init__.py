"""News-event archive to analytical tables: discover, parse, normalize, validate, publish."""

__version__ = "0.1.0"
