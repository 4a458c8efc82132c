"""``coupa-iga scim``: serve one tenant as a SCIM 2.0 service provider.

Defined here and registered on the reference host's command group; the SCIM libraries are
imported only when the command runs, so ``coupa-iga`` works without the ``scim`` extra.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from coupa_plugin.host.errors import ConfigurationError
from coupa_plugin.host.model import Tenant
from coupa_plugin.refhost._common import plugin_host, require_enabled, tenants_from
from coupa_plugin.refhost._options import sandbox_options, sandbox_section
from coupa_plugin.refhost._scim import TOKEN_ENV

if TYPE_CHECKING:
    from coupa_plugin.refhost._scim.server import ScimFacade
    from coupa_plugin.sandbox import CoupaSandbox

__all__ = ["sandbox_tenant", "scim"]


@contextmanager
def sandbox_tenant(sandbox: CoupaSandbox) -> Iterator[Tenant]:
    """``sandbox`` served on loopback, as a tenant in provisioning mode (a scratch state_dir)."""
    from coupa_plugin.sandbox import SandboxServer

    with (
        tempfile.TemporaryDirectory(prefix="coupa-scim-") as state_dir,
        SandboxServer(sandbox) as server,
    ):
        section = sandbox_section(server.url, mode="provisioning", state_dir=state_dir)
        yield Tenant(id="sandbox", plugins={"coupa": section})


def _generated_sandbox(users: int, seed: int) -> CoupaSandbox:
    try:
        from coupa_plugin.sandbox import CoupaSandbox, generate_tenant
    except ModuleNotFoundError as exc:
        raise click.UsageError(
            f"--sandbox needs the sandbox extra: pip install 'coupa-plugin[sandbox]' ({exc})"
        ) from None
    click.echo(f"starting the Coupa sandbox: {users} users (seed {seed})", err=True)
    return CoupaSandbox(generate_tenant(users=users, seed=seed))


def _facade(
    tenant: Tenant,
    plugin: str,
    token: str,
    *,
    bind: str,
    port: int,
    refresh_every_s: float,
    public_url: str | None,
) -> ScimFacade:
    try:
        from coupa_plugin.refhost._scim.server import ScimFacade
    except ModuleNotFoundError as exc:
        raise click.UsageError(
            f"coupa-iga scim needs the scim extra: pip install 'coupa-plugin[scim]' ({exc})"
        ) from None
    host = plugin_host()
    require_enabled(host, tenant, plugin)
    return ScimFacade(
        host.hooks(tenant, plugin),
        token,
        host=bind,
        port=port,
        refresh_every_s=refresh_every_s,
        public_url=public_url,
    )


@click.command()
@click.option(
    "--tenants",
    "tenants_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("tenants.toml"),
    show_default=True,
    envvar="COUPA_IGA_TENANTS",
    show_envvar=True,
    help="Tenants file (TOML).",
)
@click.option("--tenant", "tenant_id", help="The tenant to serve (not with --sandbox).")
@click.option("--plugin", "plugin_name", default="coupa", show_default=True, help="Plugin name.")
@click.option("--host", "bind", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--refresh-every",
    "refresh_every_s",
    type=click.FloatRange(min=1.0),
    default=900.0,
    show_default=True,
    help="Seconds between background full refreshes of the served copy.",
)
@click.option(
    "--public-url",
    help="The SCIM base URL clients use, behind a TLS proxy (https://scim.example.com/v2).",
)
@sandbox_options(200, "serve")
def scim(
    *,
    tenants_file: Path,
    tenant_id: str | None,
    plugin_name: str,
    bind: str,
    port: int,
    refresh_every_s: float,
    public_url: str | None,
    sandbox: bool,
    sandbox_users: int,
    sandbox_seed: int,
) -> None:
    """Serve one tenant as a SCIM 2.0 service provider (Users and entitlement Groups).

    Clients authenticate with the bearer token in COUPA_SCIM_TOKEN. Plain HTTP: put a TLS
    terminating proxy in front of it (docs/scim.md).
    """
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigurationError(
            f"{TOKEN_ENV} is not set: export the bearer token SCIM clients will send"
        )
    if not sandbox and not tenant_id:
        raise click.UsageError("give --tenant ID (or --sandbox)")
    with ExitStack() as stack:
        if sandbox:
            served = _generated_sandbox(sandbox_users, sandbox_seed)
            tenant = stack.enter_context(sandbox_tenant(served))
        else:
            [tenant] = tenants_from(tenants_file, (str(tenant_id),))
        facade = _facade(
            tenant,
            plugin_name,
            token,
            bind=bind,
            port=port,
            refresh_every_s=refresh_every_s,
            public_url=public_url,
        )
        click.echo(f"{tenant.id}: reading the tenant before serving", err=True)
        try:
            facade.start()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {bind}:{port}: {exc.strerror or exc}"
            ) from None
        stack.callback(facade.stop)
        users = len(facade.directory.users())
        click.echo(f"{tenant.id}: serving {users} users at {facade.url}", err=True)
        facade.serve_until_stopped()
