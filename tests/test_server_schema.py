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
