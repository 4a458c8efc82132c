"""``python -m coupa_plugin.sandbox``: serve a generated Coupa tenant on loopback."""

from __future__ import annotations

import errno
import json
import math
import socket
import time
from typing import Literal, get_args, get_origin, get_type_hints

import attrs
import click

from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    Operations,
    Quirks,
    SandboxServer,
    generate_tenant,
)
from coupa_plugin.sandbox._server import EXPOSED_WARNING, is_loopback


def parse_quirks(items: tuple[str, ...], list_put: str) -> Quirks:
    """``Quirks`` from ``name=value`` strings, each value read as the field's type."""
    quirks = Quirks(list_put="merge" if list_put == "merge" else "replace")
    fields = {f.name: f for f in attrs.fields(Quirks)}
    choices = {  # the closed sets (Literal switches)
        name: tuple(str(c) for c in get_args(hint))
        for name, hint in get_type_hints(Quirks).items()
        if get_origin(hint) is Literal
    }
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or name not in fields:
            raise click.BadParameter(
                f"{item!r}: expected NAME=VALUE with NAME one of {sorted(fields)}",
                param_hint="--quirk",
            )
        current = getattr(quirks, name)
        value: object
        if isinstance(current, bool):
            if raw.lower() not in {"true", "false"}:
                raise click.BadParameter(f"{name}: expected true or false", param_hint="--quirk")
            value = raw.lower() == "true"
        elif isinstance(current, int):
            try:
                value = int(raw)
            except ValueError:
                raise click.BadParameter(
                    f"{name}: expected an integer, got {raw!r}", param_hint="--quirk"
                ) from None
            if value < 1:  # page caps and statuses alike
                raise click.BadParameter(
                    f"{name}: expected a positive integer, got {value}", param_hint="--quirk"
                )
        elif isinstance(current, frozenset):
            value = frozenset(v for v in raw.split(",") if v)
        elif choices.get(name) and raw not in choices[name]:
            raise click.BadParameter(
                f"{name}: expected one of {', '.join(choices[name])}, got {raw!r}",
                param_hint="--quirk",
            )
        else:
            value = raw
        setattr(quirks, name, value)
    return quirks


def _finite(_ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"expected a finite number, got {value}", param=param)
    return value


@click.command()
@click.option(
    "--users",
    default=1_000,
    show_default=True,
    type=click.IntRange(min=0),
    help="Users to generate.",
)
@click.option("--seed", default=0, show_default=True, help="Generator and fault seed.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65_535),
    help="0 picks a free port.",
)
@click.option(
    "--latency",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    callback=_finite,
    help="Seconds added to each request.",
)
@click.option("--no-rate-limit", is_flag=True, help="Do not enforce 25 req/s, burst 20.")
@click.option(
    "--list-put",
    type=click.Choice(["replace", "merge"]),
    default="replace",
    show_default=True,
    help="What a non-empty list on PUT /api/users/:id does.",
)
@click.option(
    "--quirk",
    "quirks",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set a Quirks switch, e.g. membership_bumps_updated_at=true, "
    "retry_after=false, page_cap=25 (repeatable).",
)
@click.option(
    "--error-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    callback=_finite,
    help="Share of 5xx answers.",
)
@click.option(
    "--drop-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    callback=_finite,
    help="Share of dropped connections.",
)
def main(
    users: int,
    seed: int,
    host: str,
    port: int,
    latency: float,
    *,
    no_rate_limit: bool,
    list_put: str,
    quirks: tuple[str, ...],
    error_rate: float,
    drop_rate: float,
) -> None:
    """Serve a generated Coupa tenant and print how to reach it."""
    started = time.perf_counter()
    state = generate_tenant(users=users, seed=seed)
    sandbox = CoupaSandbox(
        state,
        quirks=parse_quirks(quirks, list_put),
        operations=Operations(
            rate_limit=not no_rate_limit,
            latency_s=(latency, latency),
            error_rate=error_rate,
            drop_rate=drop_rate,
            seed=seed,
        ),
    )
    try:
        server = SandboxServer(sandbox, host=host, port=port)
    except OSError as exc:
        # an address that does not resolve or is not this machine's is the host's fault
        unknown_host = isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL
        raise click.BadParameter(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            + (
                ""
                if unknown_host
                else " (another process may hold the port; --port 0 picks a free one)"
            ),
            param_hint="--host" if unknown_host else "--port",
        ) from None
    if not is_loopback(host):
        banner = "!" * 78
        click.echo(f"{banner}\n{EXPOSED_WARNING.format(host=host)}\n{banner}", err=True)
    click.echo(
        json.dumps(
            {
                "base_url": server.url,
                "client_id": SANDBOX_CLIENT_ID,
                "client_secret": SANDBOX_CLIENT_SECRET,
                "users": len(state.users),
                "generated_in_s": round(time.perf_counter() - started, 2),
            }
        ),
        err=False,
    )
    click.echo(
        "tenants.toml section:\n"
        f'[tenants.sandbox.coupa]\nbase_url = "{server.url}"\n'
        "allow_insecure_base_url = true\n"
        f'client_id = "{SANDBOX_CLIENT_ID}"\nclient_secret = "{SANDBOX_CLIENT_SECRET}"',
        err=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
