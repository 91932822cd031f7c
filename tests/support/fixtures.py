"""Pytest fixtures of tests/support, registered from tests/conftest.py (``pytest_plugins``)."""

from __future__ import annotations

import pytest

from tests.support.binance_emulator import BinanceEmulator


@pytest.fixture
def binance_emulator(data_dir):
    """A started :class:`BinanceEmulator` on 127.0.0.1 (wall clock); stopped after the test."""
    with BinanceEmulator(data_dir) as emulator:
        yield emulator


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (nothing listens on it)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_http(url: str, timeout_s: float = 60.0) -> bool:
    """Poll ``url`` until it answers 200 or ``timeout_s`` passes (a generous limit, not a speed assert)."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


@pytest.fixture
def pushgateway():
    """Debian's ``prometheus-pushgateway`` started on a free port; its base URL. Skipped (saying
    so) where it is not installed; stopped after the test."""
    import shutil
    import subprocess

    if shutil.which("prometheus-pushgateway") is None:
        pytest.skip("prometheus-pushgateway missing: apt-get install prometheus-pushgateway")
    port = free_port()
    # Debian's default --persistence.file is /var/lib/prometheus/pushgateway.data, shared by every
    # instance: an empty one keeps each test's pushes in its own gateway's memory
    proc = subprocess.Popen(["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_http(f"{url}/-/ready"), "the Pushgateway did not start"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def pushed(url: str) -> dict:
    """The Pushgateway's ``/metrics`` as ``{family name: family}`` (prometheus-client's parser)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}
