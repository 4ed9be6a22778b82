"""``crmbridge simulate SYSTEM``: serve one vendor simulator on loopback until stopped."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from crmbridge.adapters.registry import simulator_names

__all__ = ["register"]


def simulate(
    system: Annotated[str, typer.Argument(help=f"One of: {', '.join(simulator_names())}")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 0,
    host: Annotated[str, typer.Option(help="Loopback address to bind.")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Seed for the deterministic synthetic records.")] = 1,
    records: Annotated[int, typer.Option(help="How many records to seed.")] = 100,
    bad_fraction: Annotated[float, typer.Option(help="Fraction of realistically bad records (core banking).")] = 0.0,
    latency_ms: Annotated[float, typer.Option(help="Added latency per request, ms.")] = 0.0,
    error_rate: Annotated[float, typer.Option(help="Fraction of requests answered with a server error.")] = 0.0,
    drop_rate: Annotated[float, typer.Option(help="Fraction of connections dropped without an answer.")] = 0.0,
    token_lifetime: Annotated[float | None, typer.Option(help="Access-token lifetime, seconds.")] = None,
    rate_limit: Annotated[float | None, typer.Option(help="Requests per second before throttling.")] = None,
    concurrency_limit: Annotated[int | None, typer.Option(help="Concurrent requests before throttling.")] = None,
    extra: Annotated[list[str] | None, typer.Option(
        "--extra", help="A vendor-specific knob as KEY=VALUE, repeatable (e.g. edition=professional; each "
                        "simulator's module docstring lists its knobs).")] = None,
) -> None:
    """Serve one vendor simulator (real HTTP or SOAP on loopback) until Ctrl-C."""
    from crmbridge.adapters.registry import simulator_class
    from crmbridge.adapters.simulator import Knobs

    if host not in ("127.0.0.1", "localhost", "::1"):
        raise typer.BadParameter("simulators bind to loopback only", param_hint="--host")
    cls = simulator_class(system)
    knobs = Knobs(seed=seed, records=records, bad_fraction=bad_fraction, latency_ms=latency_ms,
                  error_rate=error_rate, drop_rate=drop_rate, token_lifetime=token_lifetime,
                  rate_limit=rate_limit, concurrency_limit=concurrency_limit, extra=_parse_extra(extra or []))
    sim = cls(knobs, host=host, port=port).start()
    for line in sim.banner():
        typer.echo(line)
    typer.echo("Press Ctrl-C to stop.")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


def _parse_extra(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--extra")
        value: object = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for conv in (int, float):
                try:
                    value = conv(raw)
                    break
                except ValueError:
                    pass
        out[key.strip()] = value
    return out


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
