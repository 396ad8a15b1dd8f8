import json
import subprocess
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from starlette.routing import Route
from starlette.testclient import TestClient

from datasvc import openapi
from datasvc.app import create_app, operations
from datasvc.auth import hash_token
from datasvc.settings import PROJECT_ROOT


def _refs(node, found):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                found.add(value)
            else:
                _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)
    return found


def test_document_is_openapi_3_1_and_every_ref_resolves(client):
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    for ref in _refs(doc, set()):
        kind, name = ref.removeprefix("#/components/").split("/")
        assert kind in ("schemas", "headers"), ref
        assert name in doc["components"][kind], ref


def test_every_route_is_documented_with_its_methods(settings):
    app = create_app(settings)
    doc = client_doc(app)
    aliases = {alias for op in operations() for alias in op.aliases}
    for route in app.routes:
        assert isinstance(route, Route)
        if route.path == "/openapi.json" or route.path.startswith("/docs"):
            continue  # the document itself and the page over it (datasvc/docs.py) are not operations
        if route.path in aliases:
            continue  # served, not listed
        documented = {m.upper() for m in doc["paths"][route.path_format]}
        # A fixed path a lookup would take answers every method itself: its dispatcher's Allow list.
        dispatch: Any = route.app
        methods = route.methods if route.methods is not None else set(dispatch.allow)
        assert documented == set(methods) - {"HEAD"}, route.path


def client_doc(app):
    with TestClient(app) as test_client:
        return test_client.get("/openapi.json").json()


def test_every_operation_documents_its_errors_as_problems(client):
    doc = client.get("/openapi.json").json()
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            statuses = set(op["responses"])
            assert {"500", "503"} <= statuses, (method, path)
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    assert "application/problem+json" in response["content"], (method, path, status)


def test_request_and_response_schemas_come_from_the_models(client):
    doc = client.get("/openapi.json").json()
    create = doc["paths"]["/api/v1/users"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/UserCreate"
    }
    user_create = doc["components"]["schemas"]["UserCreate"]
    assert user_create["additionalProperties"] is False
    assert set(user_create["required"]) == {"email", "username", "hashed_password"}
    user = doc["components"]["schemas"]["User"]
    assert "hashed_password" not in user["properties"]
    assert "hashed_password" in doc["components"]["schemas"]["Credentials"]["properties"]


def test_operation_ids_are_unique():
    ids = [op.operation_id for op in operations()]
    assert len(ids) == len(set(ids))


def test_openapi_spec_validator_accepts_the_document(client):
    validate(client.get("/openapi.json").json())


_SCHEMA_KEYS = {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "properties", "items"}


def _samples(node, pointer, found):
    """(value, JSON pointer of the schema it must satisfy, where) for every default and example."""
    if isinstance(node, dict):
        if _SCHEMA_KEYS & set(node):
            if "default" in node:
                found.append((node["default"], pointer, pointer + "/default"))
            for i, example in enumerate(node.get("examples", [])):
                found.append((example, pointer, f"{pointer}/examples/{i}"))
            if "example" in node:
                found.append((node["example"], pointer, pointer + "/example"))
        elif "schema" in node and "example" in node:  # a parameter, header or media type
            found.append((node["example"], pointer + "/schema", pointer + "/example"))
        for key, value in node.items():
            _samples(value, f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}", found)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _samples(value, f"{pointer}/{i}", found)
    return found


def test_every_default_and_example_validates_against_its_own_schema(client):
    doc = client.get("/openapi.json").json()
    registry = Registry().with_resource("urn:doc", DRAFT202012.create_resource(doc))
    samples = _samples(doc, "", [])
    assert len(samples) >= 5  # limit, sort_by, sort_order defaults; the UserCreate example; ...
    for value, pointer, where in samples:
        validator = Draft202012Validator({"$ref": "urn:doc#" + pointer}, registry=registry)
        errors = [e.message for e in validator.iter_errors(value)]
        assert not errors, (where, value, errors)


def test_a_patch_field_has_no_default_so_absent_means_unchanged(client):
    patch = client.get("/openapi.json").json()["components"]["schemas"]["UserPatch"]
    assert not [name for name, field in patch["properties"].items() if "default" in field]


def test_normalized_fields_keep_their_constraints_in_the_document(client):
    """A validator that normalizes (NFC) must not hide the rules after it: schemathesis and generated
    clients send what the document allows, and "000" as an email would then be a 422 nobody expected."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for model in ("UserCreate", "UserPatch"):
        email = schemas[model]["properties"]["email"]
        assert "pattern" in email, (model, email)
        assert "@" in email["pattern"], (model, email)
    assert schemas["AuthLookup"]["properties"]["login"]["description"] == "A username or an email."


def test_the_document_is_the_same_whatever_the_configuration(settings):
    token = f"reader users:read {hash_token('r' * 32)}"
    configured = [
        settings,
        settings.with_overrides(auth_tokens=token),
        settings.with_overrides(auth_tokens=token, caller_max_in_flight=0),
        settings.with_overrides(max_in_flight=0, list_max_offset=10),
    ]
    documents = [client_doc(create_app(s)) for s in configured]
    assert all(d == documents[0] for d in documents[1:])
    assert documents[0] == openapi.build(operations())
    get_user = documents[0]["paths"]["/api/v1/users/{id}"]["get"]
    assert {"401", "403", "429"} <= set(get_user["responses"])
    assert get_user["security"] == [{"bearer": ["users:read"]}]
    assert documents[0]["paths"]["/health"]["get"]["security"] == []


def test_aliases_are_served_but_not_listed(client):
    doc = client.get("/openapi.json").json()
    assert "/api/v1/users/" not in doc["paths"]
    assert not [
        op["operationId"]
        for item in doc["paths"].values()
        for op in item.values()
        if "Slash" in op["operationId"]
    ]


def test_health_ready_and_metrics_have_response_schemas(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert paths["/health/ready"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert paths["/metrics"]["get"]["responses"]["200"]["content"]["text/plain"]["schema"] == {
        "type": "string"
    }


# Headers of the transport, not of the API: never declared.
_TRANSPORT = {"content-type", "content-length", "date", "server", "connection", "vary", "content-encoding"}


def _declared(doc, path, method, status):
    response = doc["paths"][path][method]["responses"][str(status)]
    names = set()
    for name, header in response.get("headers", {}).items():
        names.add(name.lower())
        if "$ref" in header:
            assert header["$ref"].rsplit("/", 1)[1] in doc["components"]["headers"]
    return names


def test_every_header_sent_is_declared_for_its_operation_and_status(client):
    doc = client.get("/openapi.json").json()
    user = {"email": "a@b.io", "username": "alice", "hashed_password": "$2b$12$" + "a" * 53}
    created = client.post("/api/v1/users", json=user)
    uid = created.json()["id"]
    tag = created.headers["etag"]
    item = "/api/v1/users/{id}"
    exchanges = [
        ("/api/v1/users", "post", created),
        ("/api/v1/users", "post", client.post("/api/v1/users", json=user)),  # 409
        ("/api/v1/users", "post", client.post("/api/v1/users", content=b"x" * 70_000)),  # 413
        ("/api/v1/users", "get", client.get("/api/v1/users?limit=1")),
        ("/api/v1/users", "get", client.get("/api/v1/users?limit=5_0")),  # 422
        (item, "get", client.get(f"/api/v1/users/{uid}")),
        (item, "get", client.get(f"/api/v1/users/{uid}", headers={"if-none-match": tag})),  # 304
        (item, "get", client.get("/api/v1/users/0")),  # 404
        (item, "patch", client.patch(f"/api/v1/users/{uid}", json={"bio": "b"}, headers={"if-match": tag})),
        (item, "patch", client.patch(f"/api/v1/users/{uid}", json={"bio": "c"}, headers={"if-match": tag})),
        (item, "delete", client.delete(f"/api/v1/users/{uid}")),
        ("/api/v1/auth/lookup", "post", client.post("/api/v1/auth/lookup", json={"login": "nobody"})),
        ("/health", "get", client.get("/health")),
        ("/health/ready", "get", client.get("/health/ready")),
        ("/metrics", "get", client.get("/metrics")),
    ]
    statuses = set()
    for path, method, response in exchanges:
        statuses.add(response.status_code)
        sent = set(response.headers) - _TRANSPORT
        undeclared = sent - _declared(doc, path, method, response.status_code)
        assert not undeclared, (method, path, response.status_code, undeclared)
    assert {200, 201, 204, 304, 404, 409, 412, 413, 422} <= statuses


@pytest.mark.parametrize("status", ["429", "503"])
def test_refusals_declare_retry_after(client, status):
    doc = client.get("/openapi.json").json()
    response = doc["paths"]["/api/v1/users/{id}"]["get"]["responses"][status]
    assert response["headers"]["Retry-After"] == {"$ref": "#/components/headers/Retry-After"}


# -- issue 22: the document real tools read -------------------------------------------------------

# Warnings of Spectral's rules we accept, each with its reason; any other warning, or any error, fails.
JUSTIFIED = {
    # OpenAPI 3.1 lets the requirement of a scheme other than OAuth2/OpenID list role names: here the
    # scope the token must hold. The rule predates 3.1 and wants every name among OAuth2 scopes.
    "oas3-operation-security-defined",
}


SPECTRAL = str(PROJECT_ROOT / "scripts" / "spectral")


def _spectral(document: dict[str, Any], tmp_path) -> list[dict[str, Any]]:
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document))
    done = subprocess.run(
        [SPECTRAL, "lint", "-r", str(PROJECT_ROOT / ".spectral.yaml"), str(path), "-f", "json", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,  # the first run installs it from npm (scripts/test does that up front)
        check=False,
    )
    assert done.stdout.strip().startswith("["), done.stdout + done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def test_spectral_finds_no_errors_and_only_justified_warnings(client, tmp_path):
    found = _spectral(client.get("/openapi.json").json(), tmp_path)
    errors = [(r["code"], r["path"]) for r in found if r["severity"] == 0]
    assert errors == []
    assert sorted({(r["code"], r["message"]) for r in found if r["code"] not in JUSTIFIED}) == []


def test_spectral_catches_a_missing_description(client, tmp_path):
    document = client.get("/openapi.json").json()
    del document["paths"]["/api/v1/users"]["get"]["description"]
    document["paths"]["/api/v1/users"]["get"]["parameters"][0]["description"] = ""
    del document["servers"]
    codes = {r["code"] for r in _spectral(document, tmp_path)}
    assert {"operation-description", "oas3-parameter-description", "oas3-api-servers"} <= codes


def test_every_tag_is_declared_with_a_description(client):
    doc = client.get("/openapi.json").json()
    declared = {t["name"]: t["description"] for t in doc["tags"]}
    used = {tag for methods in doc["paths"].values() for op in methods.values() for tag in op["tags"]}
    assert used == set(declared)
    assert all(declared.values())
