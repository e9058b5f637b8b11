"""Python SDK for the Ops-Core API (in progress)."""

__all__: list[str] = []
