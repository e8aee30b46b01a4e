"""Build the inference service from settings: start local llama.cpp servers, connect remote endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread

from botfactory.config import ModelConfig, Settings
from botfactory.errors import ConfigError
from botfactory.inference.base import Model, ModelProfile
from botfactory.inference.catalogue import get_spec
from botfactory.inference.install import ensure_model_file
from botfactory.inference.local import LOCAL_PROFILE, LocalModelServer
from botfactory.inference.openai import OpenAIChatModel, OpenAIProvider
from botfactory.inference.service import Inference

__all__ = ["InferenceStack", "InstallProgress", "install_local_models", "start_inference"]

logger = logging.getLogger(__name__)

InstallProgress = Callable[[str, int, int], None]
"""Called with (model name, bytes done, bytes total) while model files are assembled and verified."""


@dataclass(kw_only=True)
class InferenceStack:
    """The inference service and the local model servers it owns; close it to stop them."""

    inference: Inference
    servers: dict[str, LocalModelServer] = field(default_factory=dict)

    async def aclose(self) -> None:
        """Close model connections and stop every local server."""
        await self.inference.aclose()
        for server in self.servers.values():
            await server.stop()


def _local_models(settings: Settings, aliases: Iterable[str]) -> dict[str, list[str]]:
    """Local catalogue model name -> the aliases it serves."""
    grouped: dict[str, list[str]] = {}
    for alias in aliases:
        config = settings.model(alias)
        if config.provider == "local":
            grouped.setdefault(config.model, []).append(alias)
    return grouped


def install_local_models(
    settings: Settings, *, aliases: Iterable[str] | None = None, progress: InstallProgress | None = None
) -> dict[str, str]:
    """Assemble and verify the files of every local model the aliases use. Returns model name -> path."""
    paths: dict[str, str] = {}
    for name in _local_models(settings, aliases or settings.models):
        spec = get_spec(name)
        report = (lambda done, total, n=name: progress(n, done, total)) if progress else None
        paths[name] = str(ensure_model_file(spec, settings.models_dir, progress=report))
    return paths


async def start_inference(
    settings: Settings, *, aliases: Iterable[str] | None = None, progress: InstallProgress | None = None
) -> InferenceStack:
    """Start what the configured aliases need and return the service that routes between them.

    Local models are assembled and verified on first use (with ``progress``), then served by one supervised
    llama.cpp child process per model on 127.0.0.1.

    Raises:
        ConfigError: a misconfigured alias.
        ModelInstallError: model files are missing or fail verification.
        ModelUnavailableError: a local server did not become healthy in time.
    """
    wanted = list(aliases or settings.models)
    paths = await anyio.to_thread.run_sync(lambda: install_local_models(settings, aliases=wanted, progress=progress))
    servers: dict[str, LocalModelServer] = {}
    for index, (name, served) in enumerate(sorted(_local_models(settings, wanted).items())):
        config = settings.model(served[0])
        servers[name] = LocalModelServer(
            Path(paths[name]),
            port=config.port or settings.local_model_port_base + index,
            context_size=config.context_size,
            threads=config.threads,
            host="127.0.0.1",
            start_timeout_s=settings.model_start_timeout_s,
        )
    try:
        await asyncio.gather(*(server.start() for server in servers.values()))
    except BaseException:
        for server in servers.values():
            await server.stop()
        raise
    models: dict[str, Model] = {}
    for alias in wanted:
        config = settings.model(alias)
        if config.provider == "local":
            models[alias] = servers[config.model].chat_model(
                config.model, timeout_s=config.timeout_s, max_retries=config.max_retries, profile=LOCAL_PROFILE
            )
        elif config.provider == "openai":
            models[alias] = _remote_model(alias, config)
        else:
            raise ConfigError(f"model alias '{alias}': provider 'scripted' exists only in tests (botfactory.testing)")
    native = {alias: cfg.native_tools for alias in wanted if (cfg := settings.model(alias)).native_tools is not None}
    fallbacks = {alias: settings.model(alias).fallbacks for alias in wanted if settings.model(alias).fallbacks}
    inference = Inference(models, fallbacks=fallbacks, native_tools=native)
    return InferenceStack(inference=inference, servers=dict(servers))


def _remote_model(alias: str, config: ModelConfig) -> Model:
    if not config.base_url:
        raise ConfigError(
            f"model alias '{alias}' uses provider 'openai' but has no base_url; set [models.{alias}] base_url"
        )
    provider = OpenAIProvider(
        config.base_url,
        config.api_key.get_secret_value() if config.api_key else None,
        timeout_s=config.timeout_s,
        max_retries=config.max_retries,
    )
    return OpenAIChatModel(config.model, provider, profile=ModelProfile(native_tool_calling=True))
