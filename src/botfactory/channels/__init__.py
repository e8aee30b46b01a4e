"""Channels: how the outside world reaches bots. They verify and normalise input and hold no business logic."""

from botfactory.channels.http import InvokeBody, http_routes, read_json

__all__ = ["InvokeBody", "http_routes", "read_json"]
