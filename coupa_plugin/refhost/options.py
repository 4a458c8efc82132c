"""What more than one ``coupa-iga`` command takes: options, and the embedded sandbox's
tenant."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["sandbox_options", "sandbox_section"]

F = TypeVar("F", bound=Callable[..., Any])


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
