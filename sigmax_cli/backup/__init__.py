"""Verified backups and safe restores of the ledger, Redis keys, models and config.

Entry points (each imports its heavy parts lazily):

* :func:`sigmax_cli.backup.create.create_backup`: write, verify and record one archive;
* :func:`sigmax_cli.backup.catalog.list_backups`: the archives of a directory;
* :func:`sigmax_cli.backup.verify.verify_archive`: checksums, member checks, restore test;
* :func:`sigmax_cli.backup.prune.prune`: restic-style keep-daily/weekly/monthly;
* :func:`sigmax_cli.backup.restore.restore`: verify, plan, refuse while bots run, safety
  backup, restore.

The archive format is described in :mod:`sigmax_cli.backup.archive`, the members in
:mod:`sigmax_cli.backup.members`, the exit codes in :mod:`sigmax_cli.errors`.
"""
