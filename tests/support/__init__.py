"""Test support: a loopback Binance emulator and its pytest fixtures."""
