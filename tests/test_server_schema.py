"""The server's OpenAPI document is its contract: an independent client (Schemathesis) drives a real server
from the schema alone, and every answer must be one the schema documents, in status, media type, headers
and body."""

import pytest
from fixture_model import IMAGE, OPTIONS
from server_harness import TOKEN, Server

# Development tools, not in the LTS venv: there this module is skipped.
schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

AUTH = {"Authorization": f"Bearer {TOKEN}"}
# No schema can say which bytes decode as an image: for a request the schema allows, 400 ("not an image") is
# as valid an answer as 202. 503 (the queue is full) is too.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "401", "403", "404", "409", "503"]
"""
# The stateful phase sends valid requests (the tests above send invalid ones too): each job gets a real image.
STATEFUL_CONFIG = f"""{CONFIG}
[generation]
mode = "positive"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("schema"), "--max-upload-mb", "1")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(server):
    """The schema as a client finds it: at /openapi.json, behind the token."""
    config = schemathesis.config.SchemathesisConfig.from_str(CONFIG)
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=AUTH, config=config)


def call(api, server, method, path, **case):
    """One request made from the schema's own description of the operation, its answer validated."""
    case.setdefault("headers", AUTH)
    return api[path][method].Case(**case).call_and_validate(base_url=server.url)


def test_a_client_driven_by_the_schema_alone_creates_follows_downloads_and_deletes_a_job(api, server):
    created = call(
        api,
        server,
        "POST",
        "/v1/jobs",
        body={"image": IMAGE.read_bytes(), **OPTIONS},
        media_type="multipart/form-data",
    )
    job = {"job_id": created.json()["id"]}
    assert created.status_code == 202 and created.headers["location"] == [f"/v1/jobs/{job['job_id']}"]

    events = call(api, server, "GET", "/v1/jobs/{job_id}/events", path_parameters=job)
    assert (
        events.headers["content-type"][0].startswith("text/event-stream") and "event: status" in events.text
    )

    status = call(api, server, "GET", "/v1/jobs/{job_id}", path_parameters=job).json()
    glb = call(api, server, "GET", "/v1/jobs/{job_id}/result.glb", path_parameters=job)
    head = call(api, server, "HEAD", "/v1/jobs/{job_id}/result.glb", path_parameters=job)
    deleted = call(api, server, "DELETE", "/v1/jobs/{job_id}", path_parameters=job)
    gone = call(api, server, "GET", "/v1/jobs/{job_id}", path_parameters=job)

    assert status["state"] == "done" and status["position"] is None
    assert glb.content[:4] == b"glTF" and head.status_code == 200 and not head.content
    assert head.headers["content-length"] == [str(len(glb.content))]
    assert deleted.status_code == 204 and gone.status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/jobs"),
        ("GET", "/v1/health"),
        ("GET", "/v1/jobs/{job_id}"),
        ("GET", "/v1/jobs/{job_id}/events"),
        ("POST", "/v1/jobs/{job_id}/cancel"),
        ("DELETE", "/v1/jobs/{job_id}"),
        ("GET", "/v1/jobs/{job_id}/result.glb"),
        ("HEAD", "/v1/jobs/{job_id}/result.npz"),
    ],
)
def test_each_operation_answers_only_what_its_schema_documents_whatever_a_client_sends(
    api, server, method, path
):
    """Schemathesis's generated requests, valid and not: never a 500, and no status, media type, header or
    body the schema does not document."""

    @hypothesis.settings(
        max_examples=25, deadline=None, suppress_health_check=list(hypothesis.HealthCheck), database=None
    )
    @hypothesis.given(case=api[path][method].as_strategy())
    def answers_as_documented(case):
        case.headers = {**(case.headers or {}), **AUTH}
        case.call_and_validate(base_url=server.url)

    answers_as_documented()


def job_operations(server) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation on one job, as the schema lists them."""
    paths = server.request("GET", "/openapi.json").json()["paths"]
    return {(method.upper(), path) for path, item in paths.items() if "{job_id}" in path for method in item}


def test_the_created_job_links_to_every_operation_on_it_and_every_error_has_one_shape(server):
    document = server.request("GET", "/openapi.json").json()
    created = document["paths"]["/v1/jobs"]["post"]["responses"]["202"]
    on_a_job = [operation for path, item in document["paths"].items() if "{job_id}" in path
                for operation in item.values()]  # fmt: skip
    assert {link["operationId"] for link in created["links"].values()} == {
        op["operationId"] for op in on_a_job
    }
    assert all(link["parameters"] == {"job_id": "$response.body#/id"} for link in created["links"].values())
    for item in document["paths"].values():
        for operation in item.values():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert answer["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"
                    }
            headers = [p for p in operation.get("parameters", []) if p["in"] == "header"]
            assert all("null" not in str(header["schema"]) for header in headers)


def test_a_stateful_client_follows_the_links_to_every_operation_on_a_job(server):
    """Schemathesis's stateful phase: jobs made with a real image, then followed by the id they answer."""
    config = schemathesis.config.SchemathesisConfig.from_str(STATEFUL_CONFIG)
    api = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=AUTH, config=config)
    reached = set()

    class Client(api.as_state_machine()):
        def before_call(self, case):
            if case.operation.path == "/v1/jobs":  # no schema can say which bytes decode as an image
                case.body = {"image": IMAGE.read_bytes(), **OPTIONS}

        def get_call_kwargs(self, case):
            return {"base_url": server.url, "headers": AUTH}

        def after_call(self, response, case):
            super().after_call(response, case)
            reached.add((case.operation.method.upper(), case.operation.path))

    Client.run(
        settings=hypothesis.settings(
            max_examples=10, stateful_step_count=8, deadline=None, database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            derandomize=True,  # the same walk every run: a random one could miss an operation now and then
        )
    )  # fmt: skip
    assert job_operations(server) <= reached, job_operations(server) - reached
