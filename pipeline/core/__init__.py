"""What every stage shares: the run's configuration and output layout, the table registry,
atomic writes, DuckDB and SQL helpers, the lock, signals and crash points.

Subpackage `__init__` files import nothing: a stage's helper process (the listing walker)
starts in milliseconds only if importing a module does not pull in its neighbours."""
