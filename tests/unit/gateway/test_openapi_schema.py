"""Building tools from OpenAPI documents: names, schemas, references, servers, auth placement, loading errors.

Requests go through httpx's in-process ``MockTransport``; the real-server behaviour is in
tests/integration/gateway/test_openapi_tools.py.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from botfactory.errors import ConfigError, CredentialError
from botfactory.gateway import CallContext, CredentialRef, OpenApiOperation, OpenApiTools

SERVER = "https://api.example.test/v1"


def document(paths: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "servers": [{"url": SERVER}],
        "paths": paths,
        **extra,
    }


def op(operation_id: str | None = "doIt", **fields: Any) -> dict[str, Any]:
    return (
        ({"operationId": operation_id} if operation_id else {}) | {"responses": {"200": {"description": "ok"}}} | fields
    )


async def load(doc: dict[str, Any], **options: Any) -> OpenApiTools:
    source = OpenApiTools("src", document=doc, **options)
    await source.start()
    if "http" not in options:  # the tools of a closed source cannot be called
        await source.aclose()
    return source


def only(source: OpenApiTools) -> OpenApiOperation:
    assert len(source.tools) == 1, [t.name for t in source.tools]
    return source.tools[0]


def context(credentials: dict[str, str] | None = None) -> CallContext:
    return CallContext(
        session_id="s",
        turn_id="t",
        bot="b",
        agent_path="b",
        user_id=None,
        idempotency_key="t:1",
        credentials=credentials or {},
    )


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[httpx.AsyncClient, list[httpx.Request]]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        yield client, seen


async def test_names_are_sanitised_prefixed_and_deduplicated(caplog: pytest.LogCaptureFixture) -> None:
    doc = document(
        {
            "/a": {"get": op("tickets.list v2"), "post": op("9create")},
            "/b": {"get": op("tickets list_v2")},  # sanitises to the same name as the first
            "/c": {"get": op(None), "put": op("x" * 80)},
        }
    )
    with caplog.at_level(logging.WARNING):
        source = await load(doc, prefix="hd_")
        bare = await load(doc)

    assert [t.name for t in source.tools] == ["hd_tickets_list_v2", "hd_9create", "hd_" + "x" * 61]
    assert [t.name for t in bare.tools][1] == "_9create"
    assert "operation=<get /c> | skipped: it has no operationId" in caplog.text
    assert "tool=<hd_tickets_list_v2> | skipped: another operation has the same name" in caplog.text


async def test_description_side_effect_and_approval() -> None:
    doc = document(
        {
            "/t": {
                "get": op("listT", summary="List.", description="All of them."),
                "head": op("headT"),
                "options": op("optT"),
                "patch": op("patchT", summary="Patch.", description="Patch."),
                "delete": op("deleteT"),
            }
        }
    )
    source = await load(doc, approval=["deleteT"])

    assert {t.name: (t.side_effect, t.needs_approval) for t in source.tools} == {
        "listT": ("read", False),
        "headT": ("read", False),
        "optT": ("read", False),
        "patchT": ("write", False),
        "deleteT": ("write", True),
    }
    descriptions = {t.name: t.description for t in source.tools}
    assert (descriptions["listT"], descriptions["patchT"], descriptions["headT"]) == (
        "List.\n\nAll of them.",
        "Patch.",
        "HEAD /t",
    )


async def test_openapi_30_schemas_become_json_schema() -> None:
    schema = {
        "type": "object",
        "xml": {"name": "thing"},
        "discriminator": {"propertyName": "kind"},
        "properties": {
            "nickname": {"type": "string", "nullable": True},
            "level": {"type": "string", "enum": ["a", "b"], "nullable": True},
            "score": {
                "type": "number",
                "minimum": 0,
                "exclusiveMinimum": True,
                "maximum": 10,
                "exclusiveMaximum": False,
            },
            "xml": {"type": "string"},  # a property named like a dropped keyword stays
        },
    }
    doc = document({"/t": {"post": op(requestBody={"content": {"application/json": {"schema": schema}}})}})

    body = only(await load(doc)).parameters["properties"]["body"]

    assert body == {
        "type": "object",
        "properties": {
            "nickname": {"type": ["string", "null"]},
            "level": {"type": ["string", "null"], "enum": ["a", "b", None]},
            "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
            "xml": {"type": "string"},
        },
    }
    assert only(await load(doc)).parameters.get("required") is None  # the body is optional


async def test_refs_to_parameters_bodies_and_path_items_are_resolved() -> None:
    components = {
        "parameters": {"Org": {"name": "org", "in": "header", "required": True, "schema": {"type": "string"}}},
        "requestBodies": {
            "Note": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Note"}}},
            }
        },
        "schemas": {
            "Note": {"type": "object", "properties": {"text": {"$ref": "#/components/schemas/Text"}}},
            "Text": {"type": "string", "maxLength": 5},
        },
        "pathItems": {
            "Notes": {
                "post": op(
                    "addNote",
                    parameters=[{"$ref": "#/components/parameters/Org"}],
                    requestBody={"$ref": "#/components/requestBodies/Note"},
                )
            }
        },
    }
    doc = document({"/notes": {"$ref": "#/components/pathItems/Notes"}}, components=components)

    parameters = only(await load(doc)).parameters

    assert parameters == {
        "type": "object",
        "properties": {
            "org": {"type": "string"},
            "body": {"type": "object", "properties": {"text": {"type": "string", "maxLength": 5}}},
        },
        "required": ["org", "body"],
        "additionalProperties": False,
    }


async def test_operation_parameters_override_path_parameters_and_ignored_headers_are_left_out() -> None:
    doc = document(
        {
            "/t/{id}": {
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "verbose", "in": "query", "schema": {"type": "string"}},
                ],
                "get": op(
                    parameters=[
                        {"name": "verbose", "in": "query", "schema": {"type": "boolean"}},
                        {"name": "Accept", "in": "header", "schema": {"type": "string"}},
                        {"name": "session", "in": "cookie", "schema": {"type": "string"}},
                    ]
                ),
            }
        }
    )

    properties = only(await load(doc)).parameters["properties"]

    assert properties == {"id": {"type": "string"}, "verbose": {"type": "boolean"}}


async def test_unusable_operations_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    doc = document(
        {
            "/upload": {"post": op("upload", requestBody={"required": True, "content": {"multipart/form-data": {}}})},
            "/ext": {"get": op("external", parameters=[{"$ref": "other.yaml#/components/parameters/P"}])},
            "/missing": {
                "get": op(
                    "missing",
                    parameters=[{"name": "p", "in": "query", "schema": {"$ref": "#/components/schemas/Nope"}}],
                )
            },
            "/clash": {
                "get": op(
                    "clash",
                    parameters=[{"name": "body", "in": "query"}],
                    requestBody={"content": {"application/json": {}}},
                )
            },
            "/fine": {"get": op("fine")},
        }
    )
    with caplog.at_level(logging.WARNING):
        source = await load(doc)

    assert [t.name for t in source.tools] == ["fine"]
    assert "skipped: its request body is not JSON (multipart/form-data)" in caplog.text
    assert "reference other.yaml#/components/parameters/P is not inside the document" in caplog.text
    assert "reference #/components/schemas/Nope points at nothing" in caplog.text
    assert "two arguments would be named body" in caplog.text


async def test_servers_base_url_and_variables() -> None:
    templated = {
        "url": "https://{region}.example.test/{version}",
        "variables": {"region": {"default": "eu"}, "version": {"default": "v2"}},
    }
    doc = document({"/t": {"get": op()}}) | {"servers": [templated, {"url": "https://other"}]}

    assert only(await load(doc)).base_url == "https://eu.example.test/v2"
    assert only(await load(doc, base_url="http://127.0.0.1:9/api/")).base_url == "http://127.0.0.1:9/api"
    with pytest.raises(ConfigError, match="names no server; pass base_url="):
        await load(document({"/t": {"get": op()}}) | {"servers": []})
    with pytest.raises(ConfigError, match=r"relative server \(/api\); pass base_url="):
        await load(document({"/t": {"get": op()}}) | {"servers": [{"url": "/api"}]})


async def test_loading_errors_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an OpenAPI 3 document"):
        await load({"swagger": "2.0", "paths": {}})
    with pytest.raises(ConfigError, match=r"cannot read the OpenAPI document .* check the path"):
        await load_file(tmp_path / "absent.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        await load_file(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="approval of tool source src names deleteAll"):
        await load(document({"/t": {"get": op()}}), approval=["deleteAll"])


async def load_file(path: Path | str) -> OpenApiTools:
    source = OpenApiTools("src", document=path)
    await source.start()
    return source


async def test_json_and_yaml_files(tmp_path: Path) -> None:
    doc = document({"/t": {"get": op("fromFile", summary="Read.")}})
    (tmp_path / "api.json").write_text(json.dumps(doc))
    (tmp_path / "api.yaml").write_text(
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\nservers: [{url: 'https://y.test'}]\n"
        "paths:\n  /t:\n    get:\n      operationId: fromYaml\n      parameters:\n"
        "        - {name: since, in: query, schema: {type: string, default: 2024-01-31}}\n"
    )

    from_json = only(await load_file(tmp_path / "api.json"))
    from_yaml = only(await load_file(str(tmp_path / "api.yaml")))

    assert (from_json.name, from_json.description) == ("fromFile", "Read.")
    assert from_yaml.name == "fromYaml"
    assert from_yaml.parameters["properties"]["since"] == {"type": "string", "default": "2024-01-31"}


@pytest.mark.parametrize(
    ("scheme", "value", "where"),
    [
        ({"type": "http", "scheme": "bearer"}, "tok", lambda r: r.headers["authorization"] == "Bearer tok"),
        (
            {"type": "http", "scheme": "basic"},
            "ann:pa:ss",
            lambda r: r.headers["authorization"] == "Basic " + base64.b64encode(b"ann:pa:ss").decode(),
        ),
        ({"type": "apiKey", "in": "header", "name": "X-Api-Key"}, "k1", lambda r: r.headers["x-api-key"] == "k1"),
        ({"type": "apiKey", "in": "query", "name": "api_key"}, "k 2", lambda r: r.url.params["api_key"] == "k 2"),
        ({"type": "apiKey", "in": "cookie", "name": "sid"}, "k3", lambda r: r.headers["cookie"] == "sid=k3"),
        ({"type": "oauth2", "flows": {}}, "at", lambda r: r.headers["authorization"] == "Bearer at"),
    ],
)
async def test_security_schemes_decide_where_the_credential_goes(
    recorder: tuple[httpx.AsyncClient, list[httpx.Request]],
    scheme: dict[str, Any],
    value: str,
    where: Callable[[httpx.Request], bool],
) -> None:
    client, seen = recorder
    doc = document({"/t": {"get": op()}}, components={"securitySchemes": {"main": scheme}}, security=[{"main": []}])
    tool = only(await load(doc, credential=CredentialRef(name="api"), http=client))

    assert await tool.invoke({}, context({"api": value})) == {"ok": True}

    assert where(seen[0])
    assert "authorization" not in seen[0].headers or scheme["type"] in ("http", "oauth2")


async def test_public_operations_get_no_credential_and_undeclared_auth_defaults_to_bearer(
    recorder: tuple[httpx.AsyncClient, list[httpx.Request]],
) -> None:
    client, seen = recorder
    doc = document({"/open": {"get": op("open", security=[])}, "/closed": {"get": op("closed")}})
    source = await load(doc, credential=CredentialRef(name="api"), http=client)
    public, private = source.tools

    assert public.credentials == ()
    assert private.credentials == (CredentialRef(name="api"),)
    await public.invoke({}, context({"api": "tok"}))
    await private.invoke({}, context({"api": "tok"}))
    assert [r.headers.get("authorization") for r in seen] == [None, "Bearer tok"]
    with pytest.raises(CredentialError, match="declares credential api but the call carries none"):
        await private.invoke({}, context())


async def test_argument_values_are_serialised(recorder: tuple[httpx.AsyncClient, list[httpx.Request]]) -> None:
    client, seen = recorder
    parameters = [
        {"name": "ids", "in": "path", "required": True, "schema": {"type": "array"}, "style": "simple"},
        {"name": "flag", "in": "query", "schema": {"type": "boolean"}},
        {"name": "csv", "in": "query", "explode": False, "schema": {"type": "array"}},
        {"name": "skip", "in": "query", "schema": {"type": "string"}},
        {"name": "X-Trace", "in": "header", "schema": {"type": "integer"}},
    ]
    doc = document(
        {
            "/items/{ids}": {
                "put": op(
                    "put",
                    parameters=parameters,
                    requestBody={"content": {"application/merge-patch+json": {"schema": {}}}},
                )
            }
        }
    )
    tool = only(await load(doc, http=client))

    await tool.invoke(
        {"ids": [1, 2], "flag": True, "csv": ["a", "b"], "skip": None, "X-Trace": 7, "body": {"n": 1}}, context()
    )

    sent = seen[0]
    assert sent.url.raw_path == b"/v1/items/1%2C2?flag=true&csv=a%2Cb"
    assert (sent.headers["x-trace"], sent.headers["content-type"]) == ("7", "application/merge-patch+json")
    assert sent.headers["idempotency-key"] == "t:1"
    assert json.loads(sent.content) == {"n": 1}


async def test_include_names_matching_nothing_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    doc = document({"/t": {"get": op("listT"), "post": op("createT")}})
    with caplog.at_level(logging.WARNING):
        source = await load(doc, include=["listT", "lisT"], prefix="x_")

    assert [t.name for t in source.tools] == ["x_listT"]
    assert "include=<lisT> | no operation has this operationId" in caplog.text
