"""`renewal-sync redrive`: send dead-lettered CRM updates to the CRM again.

    renewal-sync redrive --contract C-1 [--contract C-2 ...]   # these contracts
    renewal-sync redrive --all [--dry-run]                     # every dead CRM update

The relay of the running service picks the updates up within a second and retries them like
new ones (fresh give-up period). Only a contract's newest CRM update is re-driven: one that a
later update has overtaken stays dead, so an older stage never overwrites a newer one. This
re-drives the CRM call itself; `mesh-dlq replay` of crm.renewal.opportunity.v1 would only
re-publish the Kafka record.
"""

from __future__ import annotations

import argparse

from mesh_common.settings import DatabaseSettings
from renewal_sync.adapters.store import Store
from renewal_sync.settings import RenewalSettings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="renewal-sync redrive", description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--contract", action="append", metavar="ID", help="a contract id (repeatable)")
    which.add_argument("--all", action="store_true", help="every dead-lettered CRM update")
    parser.add_argument("--dry-run", action="store_true", help="list what would be re-driven")
    args = parser.parse_args(argv)
    cfg, db = RenewalSettings(), DatabaseSettings()
    store = Store(db.url, cfg.db_schema)
    try:
        store.migrate()
        rows = store.redrive(None if args.all else args.contract, dry_run=args.dry_run)
    finally:
        store.close()
    for contract_id, event_id in rows:
        print(f"{'would re-drive' if args.dry_run else 're-driving'} {event_id} (contract {contract_id})")
    print(f"{len(rows)} CRM update(s) {'would be queued' if args.dry_run else 'queued'} for the CRM")
    return 0
