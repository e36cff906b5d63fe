from __future__ import annotations

from typing import Optional

import typer


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 in a container)."),
    port: int = typer.Option(8000, min=1, max=65535),
    workers: int = typer.Option(1, min=1, help="API processes (Redis store only; each loads the text tower)."),
    store_url: Optional[str] = typer.Option(
        None, "--store", help="Store URL or folder; default CLIK_STORE_URL, else the embedded ./.clik/store."
    ),
    inprocess: Optional[bool] = typer.Option(
        None,
        "--inprocess/--celery",
        help="Encode product images in a thread "
        "of this process, or send them to Celery workers. Default: in-process "
        "for the embedded store, Celery for Redis.",
    ),
) -> None:
    """Run the HTTP API (representative images, rankings, search, /ui, /docs, /metrics).

    Example: CLIK_API_KEYS='["change-me"]' clik serve --port 8000
    """
    import uvicorn

    from clik_cli.settings import CliSettings
    from indexer.contracts import is_redis_url

    url = store_url or CliSettings().store_url
    on_redis = is_redis_url(url)
    if inprocess is None:
        inprocess = not on_redis
    if workers > 1:
        if not on_redis or inprocess:
            typer.echo(
                "error: --workers > 1 needs the Redis store and Celery workers (processes share nothing else)", err=True
            )
            raise typer.Exit(2)
        import os

        os.environ["CLIK_STORE_URL"] = url
        metrics_folder(os.environ)  # before the workers start: they inherit it
        # uvicorn's supervisor kills a worker that misses its health ping (5 s by default); one that
        # imports torch and loads the text tower on a busy machine takes longer (80 s seen on 2
        # shared cores, and in the compose stack) and was restarted for ever, never serving.
        # (Older uvicorn releases that pyproject.toml still allows have neither ping nor setting.)
        import inspect

        patience = (
            {"timeout_worker_healthcheck": 300}
            if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters
            else {}
        )
        uvicorn.run("api.app:app_from_env", factory=True, host=host, port=port, workers=workers, **patience)
        return

    from api.app import create_app
    from api.settings import ApiSettings
    from clik_cli.single_machine import inprocess_queue
    from clik_cli.settings import open_cli_store
    from indexer.errors import StoreError

    settings = ApiSettings()
    try:
        store = open_cli_store(url)
    except StoreError as exc:
        typer.echo(f"error: store unavailable: {exc}", err=True)
        raise typer.Exit(3)
    queue = inprocess_queue(store) if inprocess else None
    app = create_app(settings, store=store, encode_queue=queue)
    typer.echo(
        f"CLIK API on http://{host}:{port} (store {url or '.clik/store'}, "
        f"{'in-process encoding' if inprocess else 'Celery workers'}); web page /ui, docs /docs"
    )
    try:
        uvicorn.run(app, host=host, port=port)
    finally:
        if queue is not None:
            queue.close()
        store.close()


def metrics_folder(env) -> str:
    """The folder where the worker processes write their metrics (prometheus_client multiprocess
    mode, so /metrics sums them all): PROMETHEUS_MULTIPROC_DIR when set, emptied of the files of
    an earlier run (their counts would be added in), else a new temporary folder."""
    import glob
    import os
    import tempfile

    folder = env.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        for old in glob.glob(os.path.join(folder, "*.db")):
            os.remove(old)
    else:
        folder = tempfile.mkdtemp(prefix="clik-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder
