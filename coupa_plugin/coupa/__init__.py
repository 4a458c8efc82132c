"""A typed client for Coupa's API. It knows nothing of the IGA host."""

from coupa_plugin.coupa._secret import Secret

__all__ = ["Secret"]
