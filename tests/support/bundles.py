"""The tiny model bundle the API, worker and CLI tests run on: clik-tiny-test with random weights
(no pretrained towers, exported in well under a second); another seed, another model version."""

from __future__ import annotations

from pathlib import Path


def tiny_bundle(directory: Path, seed: int = 0):
    """Export a clik-tiny-test bundle into directory; returns clik.export_bundle's BundleInfo."""
    import torch

    import clik

    torch.manual_seed(seed)
    model = clik.ClikModel(clik.get_model_config("clik-tiny-test"), load_weights=False).eval()
    return clik.export_bundle(model, clik.create_tokenizer(model), directory)


def store_with_linen_shirts(bundle, store_url: str, prefix: str):
    """A store with `bundle` active and one exhibition "e" ("linen shirts") of 8 products whose
    vectors are already there (random, seeded): what the API answer tests read."""
    import numpy as np

    from indexer.config import open_store

    store = open_store(store_url, prefix=prefix)
    store.register_version(bundle.version, bundle.embed_dim, bundle_uri=str(bundle.path))
    store.activate(bundle.version)
    rng = np.random.default_rng(0)
    store.import_products([(f"p{i}", f"https://img.example/{i}.jpg", f"h{i}") for i in range(8)])
    store.put_vectors(bundle.version, [(f"h{i}", rng.standard_normal(bundle.embed_dim)) for i in range(8)])
    store.put_exhibition("e", {"name": "linen shirts"}, [f"p{i}" for i in range(8)])
    return store
