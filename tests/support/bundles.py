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
