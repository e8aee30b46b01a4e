"""Tool arguments are checked by jsonschema-rs and explained in Python jsonschema's words."""

from __future__ import annotations

from botfactory.gateway._validation import ArgumentsValidator

SCHEMA = {
    "type": "object",
    "properties": {"env": {"enum": ["dev", "prod"]}, "count": {"type": "integer", "minimum": 1}},
    "required": ["env"],
    "additionalProperties": False,
}


def test_valid_arguments_have_no_problems_and_the_compiled_validator_checks_them() -> None:
    validator = ArgumentsValidator(SCHEMA)
    assert validator._fast is not None
    assert validator.problems({"env": "dev", "count": 2}) == []


def test_every_problem_is_named_with_its_path_in_order() -> None:
    problems = ArgumentsValidator(SCHEMA).problems({"env": "everywhere", "count": 0, "extra": True})
    assert problems == [
        "arguments: Additional properties are not allowed ('extra' was unexpected)",
        "count: 0 is less than the minimum of 1",
        "env: 'everywhere' is not one of ['dev', 'prod']",
    ]


def test_draft_2020_12_keywords_are_enforced() -> None:
    validator = ArgumentsValidator({"type": "array", "prefixItems": [{"type": "string"}], "items": False})
    assert validator.problems(["a"]) == []
    assert validator.problems([1]) == ["0: 1 is not of type 'string'"]
    assert validator.problems(["a", "b"]) == ["arguments: Expected at most 1 item but found 1 extra: 'b'"]


def test_a_schema_referring_to_another_document_is_never_fetched() -> None:
    # Nothing listens on port 9: a fetch would fail or hang; the compiled validator is simply not used.
    validator = ArgumentsValidator({"$ref": "http://127.0.0.1:9/schema.json"})
    assert validator._fast is None
