"""Every key prefix of the store, in one place: what lives where (a local folder or an S3 prefix alike).

The modules that read and write these places import their prefix from here; the names are the store's
layout, which deployed stores already hold, so a value never changes.
"""

from __future__ import annotations

# the landing zone: devices upload batches to incoming/dt=<day>/<device>/<batch>.parquet|.sealed
INCOMING = "incoming/"
# the batch ledger: one create-only <batch id>.json per judged batch (accepted or quarantined)
LEDGER = "ledger/batches/"
# the landing zone's cursors: per partition, the batch ids the runs recorded (<partition>.closed: done)
CURSORS = "ledger/days/"
# withdrawals (`tandem revoke`): batches and pseudonyms every later snapshot leaves out
REVOCATIONS = "ledger/revocations/"
# erasures (`tandem erase`): what was deleted from the table, and when
ERASURES = "ledger/erasures/"
# the trainings done: <model>/<snapshot id>.json, so a snapshot is trained on once
TRAINED = "ledger/trained/"
# quarantined batches: <batch id>/ with the copy, its GX result and a one-line reason
QUARANTINE = "quarantine/"
# the accepted rows as one Delta table (a key of its own, no trailing slash: delta-rs takes it as the table's root)
TABLE = "table/accepted"
# the public JSON of each sharing policy the accepted batches recorded
POLICIES = "table/policies/"
# dataset snapshots: <snapshot id>/manifest.json (the table version, batches, policies, k)
DATASETS = "datasets/"
# the reference set: <model>/v<N>/recordings.npz and its manifest.json
REFERENCE = "reference/"
# signed releases: <model>/<version>/ (model, feature spec, golden vectors, manifest, signature)
RELEASES = "releases/"
# signed channel pointers: <model>/<channel>.json naming a release version
CHANNELS = "channels/"
# leases: one process at a time per named job (e.g. training a model)
LOCKS = "locks/"
# the device gateway's state: installs, nonces, counts, uploads, idempotency keys
GATEWAY = "gateway/"
# which task the store serves (its first writer records it)
TASK_RECORD = "task.json"
