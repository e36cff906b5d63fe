"""`clik index SOURCE`: register a catalogue's products in the store and encode their images."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import typer

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
STORE_HELP = "Store URL (redis://...) or folder; default CLIK_STORE_URL, else the embedded ./.clik/store."


@dataclass
class ProductSource:
    """Products read from SOURCE, and the lines that could not be read."""

    products: dict[str, str] = field(default_factory=dict)  # product id -> image source
    errors: dict[str, str] = field(default_factory=dict)  # where -> reason
    roots: list[str] = field(default_factory=list)  # local folders its images may be read from


def read_product_source(source: Path) -> ProductSource:
    """A folder of images (id = relative path without extension) or a CSV / JSONL file with
    ``product_id`` and ``image_url`` (a URL, or a path; relative paths from the file's folder)."""
    cat = ProductSource()
    if source.is_dir():
        cat.roots.append(str(source.resolve()))
        for path in sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            pid = path.relative_to(source).with_suffix("").as_posix()
            if pid in cat.products:
                cat.errors[str(path)] = f"duplicate product id {pid!r} (also {cat.products[pid]})"
            else:
                cat.products[pid] = str(path.resolve())
        return cat
    suffix = source.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise typer.BadParameter(f"{source}: give a folder of images, a .csv or a .jsonl file")
    cat.roots.append(str(source.resolve().parent))
    rows = _csv_rows(source) if suffix == ".csv" else _jsonl_rows(source, cat)
    for where, row in rows:
        pid, image = str(row.get("product_id") or "").strip(), str(row.get("image_url") or "").strip()
        if not pid or not image:
            cat.errors[where] = "needs both product_id and image_url"
        elif pid in cat.products:
            cat.errors[where] = f"duplicate product id {pid!r}"
        else:
            cat.products[pid] = image if "://" in image else str((source.parent / image).resolve())
    return cat


def _csv_rows(path: Path):
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"product_id", "image_url"} - set(reader.fieldnames or [])
        if missing:
            raise typer.BadParameter(
                f"{path}: missing column(s) {', '.join(sorted(missing))} "
                f"(found: {', '.join(reader.fieldnames or []) or 'none'})"
            )
        for n, row in enumerate(reader, start=2):
            yield f"{path.name}:{n}", row


def _jsonl_rows(path: Path, cat: ProductSource):
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            cat.errors[f"{path.name}:{n}"] = f"not JSON: {exc.msg}"
            continue
        if not isinstance(row, dict):
            cat.errors[f"{path.name}:{n}"] = "not a JSON object"
            continue
        yield f"{path.name}:{n}", row


def index(
    source: Path = typer.Argument(..., exists=True, help="Folder of images, or a CSV / JSONL of product_id,image_url."),
    store_url: Optional[str] = typer.Option(None, "--store", help=STORE_HELP),
    bundle: Optional[Path] = typer.Option(
        None,
        "--bundle",
        "-b",
        help="Bundle to encode with; registered, and "
        "activated when the store has no active version. Default: the active one.",
    ),
    celery: bool = typer.Option(
        False, "--celery", help="Enqueue to Celery workers (CLIK_BROKER_URL) instead of encoding here."
    ),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Images per forward pass (default CLIK_BATCH_SIZE)."),
    chunk: int = typer.Option(64, min=1, help="--celery: product ids per task."),
    decode_threads: Optional[int] = typer.Option(
        None, min=1, help="Threads fetching/decoding (default CLIK_DECODE_THREADS)."
    ),
    device: Optional[str] = typer.Option(None, help="cuda / cpu (default: cuda when available)."),
) -> None:
    """Register products and encode their images.

    Examples: clik index ./catalogue/images --bundle bundles/hm-clik
              clik index products.csv --store redis://127.0.0.1:6379/0 --celery
    """
    from clik_cli.settings import CliSettings
    from indexer.config import open_store
    from indexer.errors import InvalidInput, StoreError
    from indexer.store_settings import remember_file_roots
    from worker.settings import WorkerSettings

    settings = WorkerSettings()
    cat = read_product_source(source)
    if not cat.products:
        typer.echo(f"error: no products in {source}" + _first_errors(cat.errors), err=True)
        raise typer.Exit(2)
    cli = CliSettings()
    try:
        store = open_store(store_url or cli.store_url, prefix=cli.store_prefix)
    except StoreError as exc:
        typer.echo(f"error: store unavailable: {exc}", err=True)
        raise typer.Exit(3)
    try:
        version = _version(store, bundle)
        try:
            store.import_products([(pid, src, None) for pid, src in cat.products.items()])
            # Recorded in the store, so workers and later re-indexes read this folder too.
            remember_file_roots(store, cat.roots)
        except InvalidInput as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        if celery:
            _enqueue(settings, list(cat.products), chunk)
            typer.echo(
                f"queued {len(cat.products)} products for the workers on {settings.queue}; "
                f"watch their status in the store" + _first_errors(cat.errors, "skipped")
            )
            return
        failed = _encode_here(
            store,
            settings,
            version,
            cat,
            batch_size or settings.batch_size,
            decode_threads or settings.decode_threads,
            device or settings.device,
        )
    finally:
        store.close()
    if failed == len(cat.products):
        raise typer.Exit(1)


def _version(store, bundle: Optional[Path]):
    from clik.checkpoint import read_bundle_info

    if bundle is None:
        active = store.active_version()
        if active is None:
            typer.echo("error: the store has no active model version; pass --bundle BUNDLE_DIR", err=True)
            raise typer.Exit(2)
        return active
    try:
        info = read_bundle_info(bundle)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        typer.echo(f"error: {bundle} is not a bundle: {exc}", err=True)
        raise typer.Exit(2)
    version = store.register_version(info.version, info.embed_dim, bundle_uri=str(bundle.resolve()))
    active = store.active_version()
    if active is None:
        return store.activate(info.version)
    if active.name != info.version:
        typer.echo(
            f"error: the store's active version is {active.name}, not this bundle's {info.version}; "
            f"switch with `clik models activate {bundle}` (re-index) first",
            err=True,
        )
        raise typer.Exit(2)
    return version


def _enqueue(settings, product_ids: list[str], chunk: int) -> None:
    from tqdm import tqdm

    from indexer.contracts import ENCODE_PRODUCTS
    from worker.app import make_app

    app = make_app(settings)
    try:
        with tqdm(total=len(product_ids), unit="product", desc="queue") as bar:
            for start in range(0, len(product_ids), chunk):
                part = product_ids[start : start + chunk]
                app.send_task(ENCODE_PRODUCTS, args=[part], queue=settings.queue, ignore_result=True)
                bar.update(len(part))
    except Exception as exc:  # kombu raises transport-specific errors
        typer.echo(f"error: cannot reach the broker {settings.broker_url}: {exc}", err=True)
        raise typer.Exit(3)
    finally:
        app.close()


def _encode_here(
    store, settings, version, cat: ProductSource, batch_size: int, decode_threads: int, device: Optional[str]
) -> int:
    """Encode in this process with a progress bar; prints the summary; returns failures."""
    from tqdm import tqdm

    from indexer.store_settings import stored_file_roots
    from worker import device as devices
    from worker.encode import EncoderCache, encode_products

    # The catalogue's own folder (recorded in the store) is readable, whatever CLIK_FILE_ROOTS says.
    limits = settings.fetch_limits(stored_file_roots(store))
    encoders = EncoderCache(devices.configure(device, settings.torch_threads), batch_size, **settings.encoder_options())
    ids = list(cat.products)
    encoded, new_vectors, failed = 0, 0, dict(cat.errors)
    retry: dict[str, str] = {}
    started = time.perf_counter()
    with tqdm(total=len(ids), unit="img", desc="index") as bar:
        for start in range(0, len(ids), batch_size):
            report = encode_products(
                store, ids[start : start + batch_size], encoders, limits, version, decode_threads=decode_threads
            )
            encoded += len(report.encoded)
            new_vectors += report.new_vectors
            failed.update(report.failed)
            retry.update(report.retry)
            bar.update(len(report.encoded) + len(report.failed) + len(report.missing))
            bar.set_postfix(encoded=encoded, failed=len(failed) - len(cat.errors))
        for attempt in range(2):  # timeouts and 5xx: two more tries, then failed
            if not retry:
                break
            time.sleep(1.0 * 2**attempt)
            report = encode_products(store, list(retry), encoders, limits, version, decode_threads=decode_threads)
            encoded += len(report.encoded)
            new_vectors += report.new_vectors
            failed.update(report.failed)
            bar.update(len(report.encoded) + len(report.failed))
            retry = report.retry
        for pid, reason in retry.items():
            store.mark_failed(pid, f"gave up after 3 attempts: {reason}")
            failed[pid] = f"gave up after 3 attempts: {reason}"
            bar.update(1)
    seconds = time.perf_counter() - started
    typer.echo(
        f"encoded {encoded} of {len(ids)} products ({new_vectors} new vectors, version "
        f"{version.name[:12]}) in {seconds:.1f}s; failed {len(failed)}"
    )
    for where, reason in list(failed.items())[:20]:
        typer.echo(f"  failed  {where}: {reason}", err=True)
    if len(failed) > 20:
        typer.echo(f"  ... and {len(failed) - 20} more (see the products' status in the store)", err=True)
    return len(failed) - len(cat.errors)


def _first_errors(errors: dict[str, str], word: str = "unreadable") -> str:
    if not errors:
        return ""
    lines = [f"\n  {word}  {where}: {reason}" for where, reason in list(errors.items())[:10]]
    return "".join(lines)


app = typer.Typer(add_completion=False)
app.command()(index)
