"""Keeps a drain's leases alive while it works on a batch (indexer.pending).

Why a thread: one batch can take long (fetches bounded by the fetch deadline, then the forward
pass) and the drain's own thread is busy in it. Renewing every lease_s / 3 means a live drain
never loses its batch, while a killed one's leases run out within lease_s.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from indexer.pending import PendingSet

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, pending: PendingSet, owner: str, product_ids: Sequence[str]) -> None:
        self.pending, self.owner, self.ids = pending, owner, list(product_ids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clik-lease-keeper", daemon=True)

    def _run(self) -> None:
        every = max(self.pending.lease_s / 3.0, 0.05)
        while not self._stop.wait(every):
            try:
                self.pending.renew(self.owner, self.ids)
            except Exception as exc:  # Redis blip: the next round tries again
                log.warning("could not renew %d leases: %s", len(self.ids), exc)

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
