"""Running turns for channels: sessions, turns and their persisted steps and replies."""

from botfactory.runtime.invoke import InvokeResult, Runtime

__all__ = ["InvokeResult", "Runtime"]
