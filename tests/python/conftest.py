"""pytest set-up: makes `python/` importable and registers the homework markers."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))


def pytest_configure(config):
    for hw in range(8):
        config.addinivalue_line("markers", f"hw{hw}: graded by homework {hw}")
