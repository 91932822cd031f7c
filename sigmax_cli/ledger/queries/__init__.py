"""The ledger's queries, one mixin of :class:`~sigmax_cli.ledger.Ledger` per responsibility:
:mod:`.runs`, :mod:`.records` (a run's rows), :mod:`.bots` (heartbeats, open orders and
events of the bots: ``monitor``, ``panic``), :mod:`.venue` (a mode and exchange's orders
and fills: reconciliation), :mod:`.research` (research items, HTTP validators),
:mod:`.backups` (the backup catalogue) and :mod:`.peek` (reads that never create or
migrate a ledger)."""
