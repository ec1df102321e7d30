"""End-to-end tests: the real command line, the real Prefect flow, subprocesses. They carry
the `e2e` marker (`python3 dev.py test --fast` leaves them out)."""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
