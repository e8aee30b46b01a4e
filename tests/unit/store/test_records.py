"""Store records and exports: frozen, keyword-only values and a pinned public API."""

from __future__ import annotations

import dataclasses

import pytest

import botfactory.store
from botfactory.store import MessageRecord, SessionRecord, StepRecord, TurnRecord


def test_public_exports_are_pinned() -> None:
    # Other modules of the package (knowledge) add their own names; these are the core's.
    assert {
        "Clock",
        "FinishedTurnStatus",
        "MessageRecord",
        "SessionRecord",
        "StepKind",
        "StepRecord",
        "StepStatus",
        "Store",
        "TurnRecord",
        "TurnStatus",
        "begin_write",
        "create_engine",
        "current_revision",
        "head_revision",
        "normalize_url",
        "upgrade",
    } <= set(botfactory.store.__all__)
    assert all(hasattr(botfactory.store, name) for name in botfactory.store.__all__)


@pytest.mark.parametrize("record", [SessionRecord, MessageRecord, TurnRecord, StepRecord])
def test_records_are_frozen_and_keyword_only(record: type) -> None:
    params = record.__dataclass_params__
    assert params.frozen
    assert all(field.kw_only for field in dataclasses.fields(record))


def test_record_fields_match_the_schema_columns() -> None:
    from botfactory.store import schema

    for record, table in [
        (SessionRecord, schema.sessions),
        (MessageRecord, schema.messages),
        (TurnRecord, schema.turns),
        (StepRecord, schema.steps),
    ]:
        assert [f.name for f in dataclasses.fields(record)] == [c.name for c in table.columns]


def test_a_record_cannot_be_changed() -> None:
    session = SessionRecord(id="s", bot="b", user_id=None, status="active", created_at=1.0, updated_at=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        session.bot = "other"  # type: ignore[misc]
