"""The public test kit: test your bots deterministically, the way botfactory tests itself.

``ScriptedModel`` replays a fixed list of answers and tool calls; ``scripted_inference`` puts scripted models
behind the usual aliases so a bot runs unchanged. ``GitHubStandIn`` is a local GitHub organisation with Copilot
seats for demos and tests.
"""

from collections.abc import Mapping

from botfactory.inference import Inference, ScriptedModel, ScriptItem, call, final, raw
from botfactory.testing.github import GitHubStandIn, SeatCall, run_standin_server
from botfactory.testing.serving import serve_app
from botfactory.testing.slack import (
    PostChange,
    SlackPost,
    SlackStandIn,
    action_payload,
    message_event,
    sign,
    signed_event,
    signed_interaction,
)

__all__ = [
    "GitHubStandIn",
    "PostChange",
    "ScriptItem",
    "ScriptedModel",
    "SeatCall",
    "SlackPost",
    "SlackStandIn",
    "action_payload",
    "call",
    "final",
    "message_event",
    "raw",
    "run_standin_server",
    "scripted_inference",
    "serve_app",
    "sign",
    "signed_event",
    "signed_interaction",
]


def scripted_inference(models: Mapping[str, ScriptedModel]) -> Inference:
    """An inference service whose aliases (``large``, ``small``, ...) are served by scripted models."""
    return Inference(models)
