"""A delivery worker process for the multi-process SQS test (run as a script, not collected by pytest).

``work``: deliver into the sandbox outbox until STOP_FILE exists, then carry out pending acknowledgements.
``crash``: lease a batch with a short lease and exit at once without acknowledging, like a killed node.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import boto3

from mailstack.delivery import DeliveryWorker, OutgoingMail, SandboxOutbox, WorkerSettings
from mailstack.keyring import Keyring
from mailstack.model import Envelope
from mailstack.privacy import LocalKeyProvider, Vault
from mailstack.queue import SqsQueue
from mailstack.storage import create_storage_engine


def _prepare(envelope: Envelope) -> OutgoingMail:
    return OutgoingMail(
        envelope.message_id, "a@example.com", envelope.recipient.email, b"Subject: x\r\n\r\nx"
    )


def main() -> int:
    mode, db_url, endpoint, queue_url, stop_file = sys.argv[1:6]
    client = boto3.client("sqs", endpoint_url=endpoint, region_name="eu-west-1")
    engine = create_storage_engine(db_url)
    queue = SqsQueue(engine, queue_url, client=client)
    if mode == "crash":
        leases = queue.lease(6, 2, now=time.time())
        print(" ".join(str(lease.message_id) for lease in leases), flush=True)
        os._exit(0)  # no acknowledgement, no cleanup: the leases must expire and be retried elsewhere
    keyring = Keyring(bytes(range(32)))
    vault = Vault(engine, keyring, LocalKeyProvider(keyring))
    worker = DeliveryWorker(
        engine,
        queue,
        _prepare,
        SandboxOutbox(engine, vault),
        WorkerSettings(batch_size=5, lease_seconds=30),
        vault=vault,
    )
    while not Path(stop_file).exists():
        if worker.run_once() == 0:
            time.sleep(0.05)
    queue.flush()
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
