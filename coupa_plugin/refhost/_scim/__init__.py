"""A SCIM 2.0 service provider backed by the plugin: ``coupa-iga scim`` (docs/scim.md).

It is a host of the plugin, like the reference host: it drives it through the four hooks
only. Its libraries (scim2-server, scim2-models) come with the ``scim`` extra; importing this
package alone needs none of them.
"""

from typing import Final

from coupa_plugin.refhost._logfmt import HOST_LOGGER

__all__ = ["LOGGER", "TOKEN_ENV"]

LOGGER: Final = f"{HOST_LOGGER}.scim"

TOKEN_ENV: Final = "COUPA_SCIM_TOKEN"  # noqa: S105 - the name of the variable, not a token
