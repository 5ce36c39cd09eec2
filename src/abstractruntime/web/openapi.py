"""The OpenAPI 3 document of ``/api/v1``, written by hand: thirteen endpoints do not need a
framework to describe them, and a test checks that every route is in it."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_STATE = {"$ref": "#/components/schemas/RunState"}
_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


def _body(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {"required": False, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR for code in (401, *codes)}


def openapi_document(server_url: str) -> dict[str, Any]:
    """The document; ``server_url`` is where ``/api/v1`` is served (a mount's prefix too)."""
    paths: dict[str, Any] = {
        "/workflows": {
            "get": {
                "summary": "The registered workflows and their versions",
                "responses": {"200": _ok("workflows"), **_errors()},
            }
        },
        "/workflows/{workflow_id}/runs": {
            "post": {
                "summary": "Start a run of the workflow's newest version",
                "description": "With an Idempotency-Key header the run id is derived from the "
                "workflow id and the key: the same key returns the same run (200), in any "
                "process, instead of starting another (201).",
                "parameters": [
                    {
                        "name": "workflow_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 255},
                    },
                ],
                "requestBody": _body({"vars": {"type": "object"}}),
                "responses": {
                    "201": _ok("started", {"$ref": "#/components/schemas/Started"}),
                    "200": _ok(
                        "the key's run, started before", {"$ref": "#/components/schemas/Started"}
                    ),
                    **_errors(404, 413, 415, 422),
                },
            }
        },
        "/runs": {
            "get": {
                "summary": "A page of runs, most recently updated first",
                "parameters": [
                    {"name": name, "in": "query", "required": False, "schema": schema}
                    for name, schema in (
                        (
                            "status",
                            {
                                "type": "string",
                                "enum": ["running", "waiting", "completed", "failed", "cancelled"],
                            },
                        ),
                        ("workflow_id", {"type": "string"}),
                        (
                            "wait_reason",
                            {
                                "type": "string",
                                "enum": ["event", "until", "user", "job", "subworkflow"],
                            },
                        ),
                        ("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
                        (
                            "cursor",
                            {"type": "string", "description": "next_cursor of the page before"},
                        ),
                    )
                ],
                "responses": {
                    "200": _ok(
                        "a page",
                        {
                            "type": "object",
                            "properties": {
                                "runs": {"type": "array", "items": _STATE},
                                "next_cursor": {"type": "string", "nullable": True},
                            },
                        },
                    ),
                    **_errors(422),
                },
            }
        },
        "/runs/{run_id}": {
            "get": {
                "summary": "The run's state",
                "parameters": [_RUN_ID],
                "responses": {"200": _ok("the state", _STATE), **_errors(404)},
            }
        },
        "/runs/{run_id}/ledger": {
            "get": {
                "summary": "The run's ledger records, oldest first",
                "parameters": [_RUN_ID],
                "responses": {"200": _ok("records"), **_errors(404)},
            }
        },
        "/runs/{run_id}/ledger/verify": {
            "get": {
                "summary": "Verify the run's hash chain",
                "parameters": [_RUN_ID],
                "responses": {
                    "200": _ok("ok, count, errors, first_bad_index, head_hash, computed_head_hash"),
                    **_errors(404),
                },
            }
        },
        "/runs/{run_id}/respond": {
            "post": {
                "summary": "Answer the run's wait (an ask_user prompt), whatever its key",
                "parameters": [_RUN_ID],
                "requestBody": _body({"payload": {"type": "object"}}),
                "responses": {
                    "200": _ok("the state after", _STATE),
                    **_errors(404, 409, 413, 415, 422),
                },
            }
        },
        "/runs/{run_id}/resume": {
            "post": {
                "summary": "Resume the run's wait named wait_key",
                "parameters": [_RUN_ID],
                "requestBody": _body(
                    {"wait_key": {"type": "string"}, "payload": {"type": "object"}}
                ),
                "responses": {
                    "200": _ok("the state after", _STATE),
                    **_errors(404, 409, 413, 415, 422),
                },
            }
        },
        "/runs/{run_id}/cancel": {
            "post": {
                "summary": "Cancel the run (tree=1: and every unfinished run below it)",
                "parameters": [
                    _RUN_ID,
                    {
                        "name": "tree",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["1", "0"]},
                    },
                ],
                "requestBody": _body({"reason": {"type": "string"}}),
                "responses": {
                    "200": _ok("the run's state, with `cancelled`: the run ids cancelled"),
                    **_errors(404, 409, 415, 422),
                },
            }
        },
        "/runs/{run_id}/stream": {
            "get": {
                "summary": "Server-Sent Events: each ledger record as it commits (event "
                "`record`, id = its index; Last-Event-ID resumes), then `end`",
                "parameters": [_RUN_ID],
                "responses": {
                    "200": {"description": "the stream", "content": {"text/event-stream": {}}},
                    **_errors(404),
                },
            }
        },
        "/events/{key}": {
            "post": {
                "summary": "Emit an event: resume every run waiting on the key",
                "parameters": [
                    {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "requestBody": _body({"payload": {"type": "object"}}),
                "responses": {
                    "200": _ok(
                        "the run ids resumed",
                        {
                            "type": "object",
                            "properties": {
                                "resumed": {"type": "array", "items": {"type": "string"}}
                            },
                        },
                    ),
                    **_errors(413, 415, 422),
                },
            }
        },
        "/inbox": {
            "get": {
                "summary": "Runs waiting on a person (ask_user), the longest-waiting first",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    }
                ],
                "responses": {
                    "200": _ok(
                        "prompts: run_id, prompt, choices, allow_free_text, since, deadline"
                    ),
                    **_errors(422),
                },
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _ok("OpenAPI 3")}}
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "AbstractRuntime HTTP API", "version": "1"},
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "RunState": {
                    "type": "object",
                    "properties": {
                        "run_id": {"type": "string"},
                        "workflow_id": {"type": "string"},
                        "status": {"type": "string"},
                        "current_node": {"type": "string"},
                        "vars": {"type": "object"},
                        "waiting": {"type": "object", "nullable": True},
                        "output": {"nullable": True},
                        "error": {"type": "string", "nullable": True},
                    },
                },
                "Started": {
                    "type": "object",
                    "properties": {
                        "run_id": {"type": "string"},
                        "status": {"type": "string"},
                        "created": {"type": "boolean"},
                    },
                },
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "type": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
            },
            "responses": {
                "Error": {
                    "description": "an error: {error: {type, message}}",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            },
        },
    }
