"""What more than one ``coupa-iga`` command takes: options (with the environment variables
behind them), and the embedded sandbox's tenant."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from coupa_plugin.refhost._logfmt import configure_logging, parse_level

__all__ = [
    "ALLOW_PARTIAL_OPTION",
    "ENV_LOG_LEVEL",
    "ENV_SNAPSHOT",
    "ENV_TENANTS",
    "IGNORED_TENANTS_OPTION",
    "PLUGIN_OPTION",
    "SNAPSHOT_OPTION",
    "TENANTS_OPTION",
    "VERBOSE_OPTION",
    "format_option",
    "sandbox_options",
    "sandbox_section",
]

F = TypeVar("F", bound=Callable[..., Any])
ENV_TENANTS: Final = "COUPA_IGA_TENANTS"
ENV_SNAPSHOT: Final = "COUPA_IGA_SNAPSHOT"
ENV_LOG_LEVEL: Final = "COUPA_IGA_LOG_LEVEL"


def _verbosity(ctx: click.Context, _param: click.Parameter, count: int) -> None:
    """``-v`` before or after the subcommand (they add up), over ``COUPA_IGA_LOG_LEVEL``."""
    total = ctx.meta.get("coupa_iga.verbose", 0) + count
    ctx.meta["coupa_iga.verbose"] = total
    try:
        base = parse_level(os.environ.get(ENV_LOG_LEVEL, "warning"))
    except ValueError as exc:
        raise click.UsageError(f"{ENV_LOG_LEVEL}: {exc}") from None
    by_flag = {0: logging.WARNING, 1: logging.INFO}.get(total, logging.DEBUG)
    configure_logging(min(base, by_flag))


VERBOSE_OPTION = click.option(
    "-v",
    "--verbose",
    count=True,
    expose_value=False,
    callback=_verbosity,
    help=f"More log output (-vv for debug); the base level comes from {ENV_LOG_LEVEL}.",
)
IGNORED_TENANTS_OPTION = click.option(
    "--tenants",
    type=click.Path(path_type=Path, dir_okay=False),
    expose_value=False,
    help="Tenants file; this command reads only the snapshot (accepted for uniformity).",
)
TENANTS_OPTION = click.option(
    "--tenants",
    "tenants_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("tenants.toml"),
    show_default=True,
    envvar=ENV_TENANTS,
    show_envvar=True,
    help="Tenants file (TOML).",
)
SNAPSHOT_OPTION = click.option(
    "--snapshot",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("snapshot.sqlite"),
    show_default=True,
    envvar=ENV_SNAPSHOT,
    show_envvar=True,
    help="SQLite snapshot file.",
)
PLUGIN_OPTION = click.option(
    "--plugin", "plugin_name", default="coupa", show_default=True, help="Plugin name."
)
ALLOW_PARTIAL_OPTION = click.option(
    "--allow-partial",
    is_flag=True,
    help="Accept a run narrowed by --type, --user or --since (refused by default).",
)


def format_option(*choices: str) -> Callable[[F], F]:
    """``--format``; the first choice is the default."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=choices[0],
        show_default=True,
        help="Output format (data goes to standard output).",
    )


def sandbox_options(users: int, what: str) -> Callable[[F], F]:
    """``--sandbox``, ``--users`` and ``--seed``: serve the embedded Coupa sandbox instead of
    the tenants file (``what`` the command then does with it)."""

    def apply(func: F) -> F:
        for option in reversed(
            (
                click.option(
                    "--sandbox",
                    is_flag=True,
                    help=f"Ignore --tenants: start the embedded Coupa sandbox on loopback and "
                    f"{what} it.",
                ),
                click.option(
                    "--users",
                    "sandbox_users",
                    default=users,
                    show_default=True,
                    type=click.IntRange(min=0),
                    help="With --sandbox: how many users to generate.",
                ),
                click.option(
                    "--seed",
                    "sandbox_seed",
                    default=1,
                    show_default=True,
                    help="With --sandbox: generator seed.",
                ),
            )
        ):
            func = option(func)
        return func

    return apply


def sandbox_section(url: str, **settings: Any) -> dict[str, Any]:
    """The plugin's settings for the embedded sandbox served at ``url`` (its fixed
    credentials; the sandbox package is imported here, when a command serves it)."""
    from coupa_plugin.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET

    return {
        "base_url": url,
        "allow_insecure_base_url": True,
        "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SANDBOX_CLIENT_SECRET,
        **settings,
    }
