"""Pytest fixtures of tests/support, registered from tests/conftest.py (``pytest_plugins``)."""

from __future__ import annotations

import pytest

from tests.support.binance_emulator import BinanceEmulator


@pytest.fixture
def binance_emulator(data_dir):
    """A started :class:`BinanceEmulator` on 127.0.0.1 (wall clock); stopped after the test."""
    with BinanceEmulator(data_dir) as emulator:
        yield emulator
