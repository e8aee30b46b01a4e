"""A small heuristic screen for prompt-injection and exfiltration phrasing in inbound user messages.

It is a tripwire, not a classifier: a handful of phrasings that ordinary users of an internal bot do not write and
attackers copy from each other ("ignore all previous instructions", "reveal your system prompt", "print your
API token"). A hit quarantines the session for a person to look at; a miss proves nothing. The patterns are
matched on a normalized copy of the text (lowercase, whitespace collapsed, common look-alike punctuation folded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["SafetyFlag", "screen_message"]

_MAX_SCREENED_CHARS: Final = 20_000

_SECRETS = (
    r"(?:secrets?|tokens?|api[ _-]?keys?|passwords?|credentials?|private[ _-]?keys?|env(?:ironment)? var(?:iable)?s?)"
)
_BENIGN = r"(?:reset|policy|policies|change|expir\w*|manager|rotation|requirements?|strength|usage|count|limit)"
_PATTERNS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    (
        "ignore previous instructions",
        re.compile(
            r"\b(?:ignore|disregard|forget|override|bypass)\b (?:\w+ ){0,3}?"
            r"(?:previous|prior|above|earlier|preceding|your|system|original)\b (?:\w+ ){0,2}?"
            r"(?:instructions?|prompts?|rules|directions|guidelines|guardrails)\b"
        ),
    ),
    (
        "reveal the system prompt",
        re.compile(
            r"\b(?:reveal|show|print|repeat|output|dump|leak|tell me|display|give me|what is|what's)\b (?:\w+ ){0,3}?"
            r"(?:system|hidden|initial|original|developer) (?:prompt|instructions|message)"
        ),
    ),
    (
        "exfiltrate secrets",
        re.compile(
            r"\b(?:print|reveal|show|dump|leak|send|output|display|give me|list|exfiltrate|post)\b (?:\w+ ){0,2}?"
            rf"(?:your|the|all|all the|all your|every|any|stored) (?:\w+ ){{0,2}}?{_SECRETS}\b(?! {_BENIGN})"
        ),
    ),
    (
        "jailbreak persona",
        re.compile(r"\b(?:you are now|act as|pretend to be) (?:\w+ ){0,2}?(?:dan|jailbroken|unfiltered)\b"),
    ),
    ("developer mode", re.compile(r"\b(?:enable|enter|activate) (?:\w+ )?developer mode\b")),
)
_FOLD: Final = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "\u200b": "", "\u00a0": " "})


@dataclass(frozen=True, kw_only=True)
class SafetyFlag:
    """Why the screen flagged a message.

    Attributes:
        pattern: The name of the phrasing that matched (e.g. ``ignore previous instructions``).
        excerpt: The matched words, at most 80 characters (no more of the message is kept).
    """

    pattern: str
    excerpt: str


def screen_message(text: str) -> SafetyFlag | None:
    """The first prompt-injection or exfiltration phrasing in ``text``, or ``None`` for a message that looks fine."""
    normalized = " ".join(text[:_MAX_SCREENED_CHARS].translate(_FOLD).lower().split())
    for name, pattern in _PATTERNS:
        found = pattern.search(normalized)
        if found is not None:
            return SafetyFlag(pattern=name, excerpt=found.group(0)[:80])
    return None
