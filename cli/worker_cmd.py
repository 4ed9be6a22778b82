"""``crmbridge worker`` and ``crmbridge dispatch JOB``: distributed mode (:mod:`crmbridge.sync.runners.distributed`).

A worker is a Celery worker process consuming the configured queue; ``dispatch`` runs one job over the workers
and waits for it, like ``crmbridge run`` does in one process.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from crmbridge.cli._common import ConfigOption, finish_run
from crmbridge.cli.actor import ActorOption

__all__ = ["register"]

QueueOption = Annotated[str | None, typer.Option(
    "--queue", "-Q", help="Celery queue (default: distributed.queue of the configuration).")]


def worker(
    config: ConfigOption = None,
    queue: QueueOption = None,
    hostname: Annotated[str | None, typer.Option(
        "--hostname", "-n", help="Worker node name, unique per worker (Celery's, e.g. w1@%h).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Batches run at once by this worker.",
                                             min=1, max=256)] = 1,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork, threads or solo.")] = "prefork",
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "WARNING",
) -> None:
    """Start a worker: runs the batches that 'crmbridge dispatch' sends (until stopped with Ctrl-C / SIGTERM)."""
    from crmbridge.config import load_config
    from crmbridge.core.errors import ConfigurationError
    from crmbridge.core.extras import require_extra

    require_extra("distributed", purpose="crmbridge worker")
    from crmbridge.sync.runners.distributed import check_schema, distributed_settings, make_celery_app, worker_argv

    if pool not in ("prefork", "threads", "solo"):
        raise ConfigurationError(f"--pool must be prefork, threads or solo, not {pool!r}")
    cfg = load_config(config)
    settings = distributed_settings(cfg)
    check_schema(cfg)
    app = make_celery_app(cfg, queue=queue)
    queue = queue or settings.queue
    logging.getLogger("crmbridge").setLevel(loglevel.upper())
    app.worker_main(worker_argv(queue=queue, concurrency=concurrency, pool=pool, hostname=hostname,
                                loglevel=loglevel))


def dispatch(
    job: Annotated[str, typer.Argument(help="A one-way job of the configuration.")],
    config: ConfigOption = None,
    queue: QueueOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
    actor: ActorOption = None,
) -> None:
    """Run one job over the workers now and wait for it (exit codes as `crmbridge run`: 0, 3 partial, 1 failed,
    4 unreachable, 5 suspicious, 7 another process runs the job)."""
    from crmbridge.cli._common import runtime
    from crmbridge.cli.actor import cli_actor
    from crmbridge.cli.run_cmd import observed
    from crmbridge.core.extras import require_extra
    from crmbridge.sync.runners.distributed import dispatch as do_dispatch

    require_extra("distributed", purpose="crmbridge dispatch")
    rt = runtime(config)
    try:
        with observed(rt, job) as obs:  # logging:, metrics textfile and notifications, as `crmbridge run`
            report = obs.done(do_dispatch(rt, job, actor=cli_actor(actor or "dispatch"), queue=queue))
    finally:
        rt.close()
    finish_run(report, as_json=as_json)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.command("dispatch")(dispatch)
