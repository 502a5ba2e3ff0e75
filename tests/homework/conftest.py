"""pytest set-up of the homework tools' tests: the `slow` marker (tests that build a whole
tree; `pytest -m "not slow" tests/homework` leaves them out)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: builds a whole tree (minutes); -m 'not slow' skips")
