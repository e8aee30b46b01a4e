"""Model access: providers, aliases, fallbacks, constrained tool calling and metering."""

from botfactory.inference.base import Model, ModelProfile, ModelRequest, ModelResponse
from botfactory.inference.catalogue import CATALOGUE, LocalModelSpec, get_spec
from botfactory.inference.factory import InferenceStack, InstallProgress, install_local_models, start_inference
from botfactory.inference.install import ensure_model_file
from botfactory.inference.local import LOCAL_PROFILE, LocalModelServer
from botfactory.inference.openai import OpenAIChatModel, OpenAIProvider
from botfactory.inference.openai_server import (
    ChatCompletionBody,
    WireMessage,
    chat_chunk,
    completion_chunks,
    completion_object,
    last_user_text,
    new_completion_id,
    openai_error,
    parse_chat_body,
    to_model_request,
    usage_object,
)
from botfactory.inference.scripted import ScriptedModel, ScriptItem, call, final, raw
from botfactory.inference.service import AliasStats, Inference

__all__ = [
    "CATALOGUE",
    "LOCAL_PROFILE",
    "AliasStats",
    "ChatCompletionBody",
    "Inference",
    "InferenceStack",
    "InstallProgress",
    "LocalModelServer",
    "LocalModelSpec",
    "Model",
    "ModelProfile",
    "ModelRequest",
    "ModelResponse",
    "OpenAIChatModel",
    "OpenAIProvider",
    "ScriptItem",
    "ScriptedModel",
    "WireMessage",
    "call",
    "chat_chunk",
    "completion_chunks",
    "completion_object",
    "ensure_model_file",
    "final",
    "get_spec",
    "install_local_models",
    "last_user_text",
    "new_completion_id",
    "openai_error",
    "parse_chat_body",
    "raw",
    "start_inference",
    "to_model_request",
    "usage_object",
]
