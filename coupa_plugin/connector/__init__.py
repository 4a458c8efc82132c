"""The Coupa domain mapped onto the host model: settings, sync and provisioning."""
