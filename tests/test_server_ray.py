"""The server on Ray Serve (server/ray_serve.py): the same API answering a job, on a local Ray whose node,
proxy and everything else listen on 127.0.0.1 only."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import requests
from fixture_model import FIXTURE, core_mesh
from listeners import exposed
from ray_harness import without_a_cluster
from server_harness import FORM, IMAGE, REPO, free_port, wait_for

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")


@pytest.fixture(scope="module")
def serve_url(local_ray):
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    from triposr_blender.server import deployment

    serve.run(
        deployment({"model": str(FIXTURE), "num_gpus": 0, "num_cpus": 0.5, "max_replicas": 1}), blocking=False
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(f"{url}/v1/health", timeout=5).ok)
    yield url
    serve.shutdown()


def test_a_ray_serve_deployment_answers_a_job_with_the_cores_mesh(serve_url):
    health = requests.get(f"{serve_url}/v1/health", timeout=10).json()
    job_id = requests.post(
        f"{serve_url}/v1/jobs", data=FORM, files={"image": ("chair.png", IMAGE.read_bytes())}
    ).json()["id"]

    status = wait_for(lambda: requests.get(f"{serve_url}/v1/jobs/{job_id}", timeout=10).json(), finished=True)
    npz = np.load(io.BytesIO(requests.get(f"{serve_url}/v1/jobs/{job_id}/result.npz", timeout=30).content))

    assert health["model"] == FIXTURE.name and health["devices"] == ["ray"]
    assert status["state"] == "done", status
    np.testing.assert_array_equal(npz["faces"], core_mesh().faces)


SERVE_RUN_START = """
import json, os, sys
sys.path.insert(0, "tests")
from listeners import descendants, listening_addresses
from triposr_blender import ray_cluster
import ray

ray_cluster.start_for_serve_run(argv=["serve", "run", "triposr_blender.server:deployment"])
addresses = sorted(listening_addresses(descendants(os.getpid())))
print(json.dumps({"namespace": ray.get_runtime_context().namespace, "addresses": addresses}))
ray.shutdown()
"""


def test_serve_run_without_a_cluster_gets_a_ray_on_loopback_only():
    """`serve run` builds the application before it starts a Ray, and would start one open to the network."""
    run = subprocess.run(
        [sys.executable, "-c", SERVE_RUN_START],
        cwd=REPO,
        env=without_a_cluster(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    started = json.loads(run.stdout.strip().splitlines()[-1])
    addresses = {tuple(address) for address in started["addresses"]}
    assert started["namespace"] == "serve" and len(addresses) > 3
    assert not exposed(addresses), sorted(exposed(addresses))
