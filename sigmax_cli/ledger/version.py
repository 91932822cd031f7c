"""The ledger schema version this sigmax writes (no SQLAlchemy import: health reads it).

``migrations.MIGRATIONS[-1].version`` must equal it; migrations.py checks at import.
"""

SCHEMA_VERSION = 5
