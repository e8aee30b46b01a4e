from __future__ import annotations

import itertools

import pytest

from botfactory.memory.chunking import chunk_document, document_title, split_text

WORDS = " ".join(f"word{i:03d}" for i in range(400))  # 3,199 characters of distinct words


def test_title_is_first_level_one_heading_else_fallback() -> None:
    assert document_title("intro\n## Setup\n# Rotate API keys\ntext", "rotate") == "Rotate API keys"
    assert document_title("## Only a section\ntext", "file-stem") == "file-stem"
    assert document_title("```\n# not a heading\n```\ntext", "stem") == "stem"


def test_chunks_carry_title_and_section_heading() -> None:
    doc = "# Rotate API keys\nWhy rotate.\n\n## Steps\nOpen settings.\n\n## Rollback\nRestore the old key.\n"
    chunks = chunk_document(doc, fallback_title="rotate")
    assert [(c.ordinal, c.heading, c.text) for c in chunks] == [
        (0, "Rotate API keys", "Why rotate."),
        (1, "Rotate API keys > Steps", "Open settings."),
        (2, "Rotate API keys > Rollback", "Restore the old key."),
    ]


def test_plain_text_uses_fallback_title() -> None:
    chunks = chunk_document("just some notes\nover two lines", fallback_title="notes")
    assert [(c.heading, c.text) for c in chunks] == [("notes", "just some notes\nover two lines")]


def test_headings_inside_code_fences_do_not_split() -> None:
    doc = "# Title\n## Shell\n```bash\n# a comment\necho hi\n```\n"
    chunks = chunk_document(doc, fallback_title="x")
    assert len(chunks) == 1
    assert chunks[0].heading == "Title > Shell"
    assert "# a comment" in chunks[0].text


def test_sections_without_text_yield_no_chunks() -> None:
    assert chunk_document("# Title\n## Empty\n\n## Also empty\n", fallback_title="x") == []
    assert chunk_document("", fallback_title="x") == []


def test_long_section_splits_within_limit_with_overlap_on_word_boundaries() -> None:
    pieces = split_text(WORDS, max_chars=800, overlap=120)
    assert len(pieces) >= 4
    words = set(WORDS.split())
    for piece in pieces:
        assert len(piece) <= 800
        assert set(piece.split()) <= words  # no word was cut in half
    for before, after in itertools.pairwise(pieces):
        shared = set(before.split()) & set(after.split())
        assert 8 <= len(shared) <= 20  # ~120 characters of 8-character words
    assert pieces[0].split()[0] == "word000"
    assert pieces[-1].split()[-1] == "word399"


def test_prefers_paragraph_breaks() -> None:
    first = "alpha " * 100  # 600 characters
    second = "beta " * 100
    pieces = split_text(f"{first}\n\n{second}", max_chars=800, overlap=0)
    assert pieces[0] == first.strip()
    assert pieces[1] == second.strip()


def test_a_word_longer_than_the_limit_is_cut() -> None:
    pieces = split_text("x" * 2000, max_chars=800, overlap=100)
    assert all(len(p) <= 800 for p in pieces)
    assert pieces[0] == "x" * 800


def test_rejects_overlap_not_smaller_than_chunk() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_document("text", fallback_title="x", max_chars=100, overlap=100)
