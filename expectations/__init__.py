"""The expectation suites (`<name>.json` with its frame query `<name>.sql`), installed as the
package `pipeline.quality.expectations` (see pyproject.toml)."""
