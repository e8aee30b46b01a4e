"""Settings: one typed object, resolved once and passed to the services that need it.

Precedence, lowest first: built-in defaults < ``botfactory.toml`` < ``BOTFACTORY_*`` environment
variables < explicit overrides (CLI flags). ``BOTFACTORY_HOME`` (default ``~/.botfactory``) holds all
local state: the SQLite database, assembled model files, indexes. The configuration file is
``BOTFACTORY_CONFIG`` if set, else ``./botfactory.toml``, else ``$BOTFACTORY_HOME/botfactory.toml``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from botfactory.errors import ConfigError

__all__ = ["ModelConfig", "Settings", "default_home", "find_config_file"]

ProviderName = Literal["local", "openai", "scripted"]


class ModelConfig(BaseModel):
    """One model alias: which provider serves it and how.

    For ``local``, ``model`` names an entry of the built-in catalogue (see ``botfactory models list``)
    and the platform starts a llama.cpp server for it. For ``openai``, ``base_url`` is any
    OpenAI-compatible endpoint and ``model`` the name it expects.
    """

    model_config = ConfigDict(extra="forbid")

    provider: ProviderName = "local"
    model: str
    base_url: str | None = None
    api_key: SecretStr | None = None
    context_size: int = Field(default=4096, ge=256)
    threads: int = Field(default=2, ge=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    timeout_s: float = Field(default=300.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    fallbacks: list[str] = Field(default_factory=list)
    native_tools: bool | None = None
    """Force native tool calling on or off; ``None`` takes the provider's profile."""


def _default_models() -> dict[str, ModelConfig]:
    return {
        "large": ModelConfig(provider="local", model="qwen2.5-coder-1.5b-instruct-q4_k_m"),
        "small": ModelConfig(provider="local", model="qwen2.5-coder-0.5b-instruct-q4_k_m"),
    }


def default_home() -> Path:
    """``BOTFACTORY_HOME`` or ``~/.botfactory``."""
    return Path(os.environ.get("BOTFACTORY_HOME") or Path.home() / ".botfactory").expanduser()


def find_config_file(home: Path | None = None) -> Path | None:
    """The configuration file in effect, or ``None`` when there is none."""
    explicit = os.environ.get("BOTFACTORY_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"BOTFACTORY_CONFIG points to {path}, which does not exist; create it or unset the variable"
            )
        return path
    for candidate in (Path.cwd() / "botfactory.toml", (home or default_home()) / "botfactory.toml"):
        if candidate.is_file():
            return candidate
    return None


class Settings(BaseSettings):
    """Every setting botfactory reads. Build it with :meth:`Settings.load`."""

    model_config = SettingsConfigDict(
        env_prefix="BOTFACTORY_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(default_factory=default_home)
    database_url: str | None = None
    """SQLAlchemy URL; default ``sqlite:///$BOTFACTORY_HOME/botfactory.db``."""
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)

    models: dict[str, ModelConfig] = Field(default_factory=_default_models)
    local_model_port_base: int = Field(default=8091, ge=1024, le=65000)
    model_start_timeout_s: float = Field(default=180.0, gt=0)

    bots_dir: Path | None = None
    """Extra directory of user bots (``*.py`` files defining ``bot = Bot(...)``)."""

    max_message_chars: int = Field(default=16_000, ge=1)
    max_request_bytes: int = Field(default=256 * 1024, ge=1024)

    turn_max_tokens: int = Field(default=32_000, ge=1)

    github_base_url: str | None = None
    """GitHub REST API base URL. Unset: ``botfactory up`` serves a local demo stand-in."""
    github_org: str = "example-org"
    github_token: SecretStr | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = find_config_file()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Resolve settings from every layer; ``overrides`` (CLI flags) win. ``None`` values are ignored."""
        given = {key: value for key, value in overrides.items() if value is not None}
        try:
            return cls(**given)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
            raise ConfigError(
                f"invalid settings ({problems}); fix botfactory.toml or the BOTFACTORY_* variables"
            ) from None

    @property
    def resolved_database_url(self) -> str:
        """The database URL in effect."""
        return self.database_url or f"sqlite:///{self.home / 'botfactory.db'}"

    @property
    def models_dir(self) -> Path:
        """Where assembled local model files live."""
        return self.home / "models"

    def model(self, alias: str) -> ModelConfig:
        """The configuration of a model alias."""
        try:
            return self.models[alias]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise ConfigError(
                f"unknown model alias '{alias}' (configured: {known}); add [models.{alias}] to botfactory.toml"
            ) from None

    def masked(self) -> dict[str, Any]:
        """The resolved settings as plain data with every secret replaced by ``***``."""
        data = self.model_dump(mode="json")
        data["database_url"] = _mask_url(self.resolved_database_url)
        return data


def _mask_url(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
