"""Exhibitions precomputed again when their products' vectors arrive.

An exhibition's precompute (worker/precompute.py) runs when it is written and before a
re-index's switch. Its products are often encoded after it was written (a catalogue loaded
in any order): each encode changes the block stamp, so the precomputed block and the answer
rendered from it (api/announced.py) no longer serve, and the first read after it computed
again. So after each encoded batch the exhibitions listing those products are precomputed
again, by a `clik.precompute_exhibitions` task sent with a countdown of `window_s`.

A bulk load encodes an exhibition's products over many batches; one task per batch would
precompute it many times over. An exhibition gets a task only when no task is already
scheduled for it inside the window (store.claim, which expires after `window_s`): that task
reads the store when it runs, `window_s` or more after the claim, so it covers every product
encoded until the claim expired; a product encoded after that claims a new one.
"""

from __future__ import annotations

from collections.abc import Sequence

from indexer.store import VectorStore


def exhibitions_to_refresh(store: VectorStore, encoded: Sequence[str], window_s: int) -> list[str]:
    """The exhibitions of these newly encoded products that need a precompute task now (none
    scheduled in the window); `window_s` 0 turns this off."""
    if window_s <= 0 or not encoded:
        return []
    return [eid for eid in store.exhibitions_of(encoded) if store.claim("refresh:" + eid, window_s)]
