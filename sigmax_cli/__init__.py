"""sigmax engine: everything a command, a test or a cron job can reuse (no Typer here)."""

__version__ = "0.1.0"
