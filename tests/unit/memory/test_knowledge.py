from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.errors import InvalidInputError, KnowledgeError
from botfactory.memory.knowledge import KnowledgeBase, SkippedFile
from botfactory.store.knowledge import KnowledgeStore

if TYPE_CHECKING:
    from conftest import HashingEmbedder


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def kb(engine: AsyncEngine, hashing_embedder: HashingEmbedder) -> KnowledgeBase:
    return KnowledgeBase("docs", KnowledgeStore(engine), hashing_embedder)


async def test_sources_are_relative_to_the_folder_name(tmp_path: Path, kb: KnowledgeBase) -> None:
    docs = tmp_path / "docs"
    write(docs / "vault" / "rotate-api-keys.md", "# Rotate API keys\nrotate the vault key monthly")
    write(docs / "notes.TXT", "giraffe zebra savanna")
    write(docs / "image.png", b"\x89PNG\x00")
    write(docs / ".obsidian" / "workspace.md", "hidden editor state")

    report = await kb.ingest(docs)

    assert (report.added, report.chunks, report.skipped) == (2, 2, ())
    hits = await kb.search("rotate vault key", k=5)
    assert [h.source for h in hits] == ["docs/vault/rotate-api-keys.md", "docs/notes.TXT"]
    assert hits[0].heading == "Rotate API keys"
    assert hits[0].text == "rotate the vault key monthly"


async def test_unusable_files_are_reported_and_skipped(tmp_path: Path, kb: KnowledgeBase) -> None:
    docs = tmp_path / "docs"
    write(docs / "binary.md", b"abc\x00def")
    write(docs / "latin1.txt", "caf\xe9".encode("latin-1"))
    write(docs / "empty.md", "   \n")
    write(docs / "headings-only.md", "# Title\n## Section\n")
    write(docs / "good.md", "useful text")
    unreadable = write(docs / "secret.md", "no access")
    unreadable.chmod(0)

    report = await kb.ingest(docs)

    if os.geteuid() == 0:  # root reads anything
        assert report.added == 2
    else:
        assert report.added == 1
        assert SkippedFile(source="docs/secret.md", reason="unreadable: Permission denied") in report.skipped
    reasons = {s.source: s.reason for s in report.skipped}
    assert reasons["docs/binary.md"] == "binary file"
    assert reasons["docs/latin1.txt"] == "not UTF-8 text"
    assert reasons["docs/empty.md"] == "empty"
    assert reasons["docs/headings-only.md"] == "empty"


async def test_progress_reports_every_file(tmp_path: Path, kb: KnowledgeBase) -> None:
    docs = tmp_path / "docs"
    for i in range(3):
        write(docs / f"{i}.md", f"document {i}")
    seen: list[tuple[int, int]] = []
    await kb.ingest(docs, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]


async def test_reingest_embeds_only_changed_files(
    tmp_path: Path, kb: KnowledgeBase, hashing_embedder: HashingEmbedder
) -> None:
    docs = tmp_path / "docs"
    write(docs / "a.md", "alpha text")
    write(docs / "b.md", "beta text")
    await kb.ingest(docs)
    hashing_embedder.calls.clear()

    write(docs / "b.md", "beta text, revised")
    report = await kb.ingest(docs)

    assert (report.added, report.updated, report.unchanged, report.removed) == (0, 1, 1, 0)
    assert hashing_embedder.calls == [["b\nbeta text, revised"]]
    forced = await kb.ingest(docs, force=True)
    assert (forced.updated, forced.unchanged) == (2, 0)


async def test_a_file_that_becomes_empty_leaves_the_kb(tmp_path: Path, kb: KnowledgeBase) -> None:
    docs = tmp_path / "docs"
    write(docs / "a.md", "alpha text")
    write(docs / "b.md", "beta text")
    await kb.ingest(docs)
    write(docs / "b.md", "")
    report = await kb.ingest(docs)
    assert report.removed == 1
    assert {h.source for h in await kb.search("beta text")} == {"docs/a.md"}


async def test_single_file_and_other_folders_are_left_alone(tmp_path: Path, kb: KnowledgeBase) -> None:
    write(tmp_path / "docs" / "a.md", "alpha")
    write(tmp_path / "runbooks" / "r.md", "runbook")
    single = write(tmp_path / "faq.md", "frequently asked")
    await kb.ingest(tmp_path / "docs")
    await kb.ingest(tmp_path / "runbooks")
    report = await kb.ingest(single)
    assert report.added == 1
    (tmp_path / "docs" / "a.md").unlink()
    report = await kb.ingest(tmp_path / "docs")
    assert report.removed == 1
    stats = await kb.stats()
    assert (stats.documents, stats.chunks) == (2, 2)
    assert {h.source for h in await kb.search("runbook frequently")} == {"runbooks/r.md", "faq.md"}


async def test_keyword_matches_get_a_boost(
    engine: AsyncEngine, tmp_path: Path, make_embedder: type[HashingEmbedder]
) -> None:
    kb = KnowledgeBase("flat", KnowledgeStore(engine), make_embedder(flat=True))
    write(tmp_path / "docs" / "a.md", "nothing relevant here")
    write(tmp_path / "docs" / "b.md", "the ERR_TOKEN_EXPIRED error code")
    await kb.ingest(tmp_path / "docs")
    hits = await kb.search("what does ERR_TOKEN_EXPIRED mean", k=2)
    assert hits[0].source == "docs/b.md"
    assert hits[0].score > hits[1].score


async def test_search_errors_and_empty_kb(tmp_path: Path, kb: KnowledgeBase) -> None:
    assert await kb.search("anything") == []
    with pytest.raises(InvalidInputError, match="empty"):
        await kb.search("   ")
    with pytest.raises(InvalidInputError, match="k must"):
        await kb.search("query", k=0)
    with pytest.raises(KnowledgeError, match="no such file"):
        await kb.ingest(tmp_path / "missing")


async def test_index_built_by_another_model_is_refused(
    engine: AsyncEngine, tmp_path: Path, make_embedder: type[HashingEmbedder]
) -> None:
    write(tmp_path / "docs" / "a.md", "alpha")
    await KnowledgeBase("kb", KnowledgeStore(engine), make_embedder(64)).ingest(tmp_path / "docs")
    with pytest.raises(KnowledgeError, match="force=True"):
        await KnowledgeBase("kb", KnowledgeStore(engine), make_embedder(32)).search("alpha")
