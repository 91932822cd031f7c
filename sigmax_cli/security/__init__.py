"""Security audit of a sigmax deployment: dependencies, code, secrets, configuration.

``run_scan`` (in :mod:`sigmax_cli.security.scan`) is the engine call of
``sigmax security-scan``; scanners implement :class:`~sigmax_cli.security.base.Scanner`, one
module each (``dependencies``, ``code``, ``secrets``, ``config``); ``baseline`` reads the
ignore file; ``formats`` renders tables, JSON and SARIF. Heavy tools (pip-audit, bandit,
detect-secrets, ccxt) are imported only inside the scanner that runs them.
"""
