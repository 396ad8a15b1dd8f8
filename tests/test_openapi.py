from starlette.routing import Route

from datasvc.app import create_app, operations


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
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc, set()):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref


def test_every_route_is_documented_with_its_methods(settings):
    app = create_app(settings)
    doc = client_doc(app)
    for route in app.routes:
        assert isinstance(route, Route)
        if route.path == "/openapi.json" or route.path.startswith("/docs"):
            continue  # the document itself and the page over it (datasvc/docs.py) are not operations
        documented = {m.upper() for m in doc["paths"][route.path_format]}
        assert documented == set(route.methods or ()) - {"HEAD"}, route.path


def client_doc(app):
    from starlette.testclient import TestClient

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
