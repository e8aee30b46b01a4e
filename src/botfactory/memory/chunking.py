"""Splitting Markdown and plain text into passages small enough to embed and cite.

A document is cut at its headings first, then each section into chunks of about ``max_chars``
characters that overlap by about ``overlap`` characters, preferring paragraph, then sentence,
then word boundaries. Every chunk carries ``heading`` = "Doc title > Section heading" so a search
hit can be cited and the embedding knows what the passage is about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Chunk", "chunk_document", "document_title"]

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"[.!?:;](?=\s)")


@dataclass(frozen=True, kw_only=True)
class Chunk:
    """One passage of a document, in document order."""

    ordinal: int
    heading: str
    text: str


def document_title(text: str, fallback: str) -> str:
    """The first level-one ``# `` heading outside code blocks, else ``fallback`` (the file stem)."""
    for level, title, _ in _sections(text):
        if level == 1 and title:
            return title
    return fallback


def chunk_document(text: str, *, fallback_title: str, max_chars: int = 600, overlap: int = 100) -> list[Chunk]:
    """Split a Markdown or plain-text document into overlapping chunks under their headings.

    Args:
        text: The whole document.
        fallback_title: Title when the document has no ``# `` heading, usually the file stem.
        max_chars: Upper bound of a chunk's length; a single word longer than this is cut.
        overlap: About how many characters consecutive chunks of one section share.

    Returns:
        The chunks in document order; empty when the document has no text besides headings.
    """
    if max_chars < 1 or not 0 <= overlap < max_chars:
        raise ValueError("need max_chars >= 1 and 0 <= overlap < max_chars")
    title = document_title(text, fallback_title)
    chunks: list[Chunk] = []
    for _, section, body in _sections(text):
        heading = title if not section or section == title else f"{title} > {section}"
        for piece in split_text(body, max_chars=max_chars, overlap=overlap):
            chunks.append(Chunk(ordinal=len(chunks), heading=heading, text=piece))
    return chunks


def split_text(text: str, *, max_chars: int, overlap: int) -> list[str]:
    """Cut ``text`` into stripped pieces of at most ``max_chars``, overlapping by about ``overlap``."""
    text = text.strip()
    pieces: list[str] = []
    start = 0
    while start < len(text):
        if len(text) - start <= max_chars:
            pieces.append(text[start:].strip())
            break
        end = _break_point(text, start, start + max_chars)
        pieces.append(text[start:end].strip())
        start = _next_start(text, start, end, overlap)
    return [p for p in pieces if p]


def _break_point(text: str, start: int, limit: int) -> int:
    """The best place to end a chunk in ``text[start:limit]``, not before its middle."""
    floor = start + (limit - start) // 2
    window = text[floor:limit]
    paragraph = window.rfind("\n\n")
    if paragraph != -1:
        return floor + paragraph
    sentences = [m.end() for m in _SENTENCE_END.finditer(window)]
    if sentences:
        return floor + sentences[-1]
    # A word boundary anywhere in the window; the text at ``limit`` may itself start a word.
    for i in range(limit, floor, -1):
        if text[i].isspace() or text[i - 1].isspace():
            return i
    return limit


def _next_start(text: str, start: int, end: int, overlap: int) -> int:
    """Where the next chunk starts: ``overlap`` characters before ``end``, moved to a word start."""
    candidate = max(end - overlap, start + 1)
    while candidate < end and not text[candidate - 1].isspace():
        candidate += 1
    while candidate < len(text) and text[candidate].isspace():
        candidate += 1
    return candidate


def _sections(text: str) -> list[tuple[int, str, str]]:
    """``(level, heading, body)`` per heading; text before the first heading has level 0."""
    sections: list[tuple[int, str, str]] = []
    level, heading, body = 0, "", []
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            body.append(line)
            continue
        sections.append((level, heading, "\n".join(body)))
        level, heading, body = len(match.group(1)), match.group(2).strip(), []
    sections.append((level, heading, "\n".join(body)))
    return sections
