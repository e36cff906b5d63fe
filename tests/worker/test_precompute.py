"""Precompute: topic entries (clik.topic_cache) and packed blocks made ahead of the first read,
on the real embedded store with a real (tiny) bundle; and by the re-index before its switch."""

from __future__ import annotations

import numpy as np

from clik import topic_cache
from clik.image_source import FetchLimits
from clik.encoders import TopicEncoder
from worker.encode import EncoderCache, encode_products
from worker.reindex import run_reindex
from worker.precompute import TopicSides, precompute, precompute_all

TOPICS = {
    "a": {"name": "linen shirts", "cat1": "Men"},
    "b": {"name": "wool coats"},
    "c": {"name": "linen shirts", "cat1": "Men"},
}


def _exhibitions(store, image_root, encoders) -> None:
    limits = FetchLimits(file_roots=(str(image_root),))
    for i in range(3):
        store.put_product(f"p{i}", str(image_root / f"good{i}.jpg"))
    encode_products(store, ["p0", "p1", "p2"], encoders, limits)
    for eid, topic in TOPICS.items():
        store.put_exhibition(eid, topic, ["p0", "p1", "p2", "unknown"])


def test_precompute_writes_the_entry_the_api_reads_and_stores_each_block(store, image_root, tiny_bundle):
    encoders = EncoderCache(device="cpu", batch_size=8)
    _exhibitions(store, image_root, encoders)
    sides = TopicSides(store, device="cpu")
    report = precompute(store, ["a", "b", "c", "gone"], sides)
    # a and c share one topic: encoded once; the deleted exhibition is counted, not fatal
    assert (report.exhibitions, report.topics_encoded, report.topics_cached, report.gone) == (3, 2, 0, 1)
    encoder = TopicEncoder.load(tiny_bundle.path, device="cpu")
    for topic in TOPICS.values():
        entry = store.get_topic_embedding(tiny_bundle.version, topic_cache.entry_key(topic))
        query, emb = topic_cache.split_entry(entry)
        want_emb, want_query = encoder.embeddings_and_queries([topic_cache.clean_topic(topic)])
        assert np.allclose(query, want_query[0], atol=1e-5) and np.allclose(emb, want_emb[0], atol=1e-5)
    again = precompute(store, ["a", "b"], sides)
    assert (again.topics_encoded, again.topics_cached) == (0, 2)  # idempotent: nothing encoded twice


def test_the_reindex_precomputes_every_exhibition_for_the_new_version_before_the_switch(
    store, image_root, tiny_bundle, second_bundle
):
    encoders = EncoderCache(device="cpu", batch_size=8)
    _exhibitions(store, image_root, encoders)
    new = second_bundle.version
    store.register_version(new, second_bundle.embed_dim, bundle_uri=str(second_bundle.path))
    seen_at_switch: dict[str, bool] = {}
    activate = store.activate

    def activate_and_look(name):  # what the store holds at the moment of the switch
        seen_at_switch.update(
            {eid: store.get_topic_embedding(new, topic_cache.entry_key(t)) is not None for eid, t in TOPICS.items()}
        )
        return activate(name)

    store.activate = activate_and_look
    progress = run_reindex(store, new, encoders, FetchLimits(file_roots=(str(image_root),)))
    assert progress.state == "switched" and store.active_version().name == new
    assert seen_at_switch == {"a": True, "b": True, "c": True}
    report = precompute_all(store, new, TopicSides(store, device="cpu"))
    assert (report.exhibitions, report.topics_encoded) == (3, 0)  # all there already
