"""The HTTP API: build it with :func:`opscore.api.app.create_app`."""

from opscore.api.app import create_app

__all__ = ["create_app"]
