"""The server: the composition root (:class:`Platform`) and the ASGI app that mounts the channels."""

from botfactory.server.app import create_app, create_metrics_app
from botfactory.server.auth import AuthMode
from botfactory.server.heap import freeze_startup_heap
from botfactory.server.openapi import full_document
from botfactory.server.platform import DEFAULT_KB, Platform, open_knowledge

__all__ = [
    "DEFAULT_KB",
    "AuthMode",
    "Platform",
    "create_app",
    "create_metrics_app",
    "freeze_startup_heap",
    "full_document",
    "open_knowledge",
]
