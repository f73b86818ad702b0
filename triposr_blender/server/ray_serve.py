"""The TripoSR server on Ray Serve: the same API, and the model a deployment whose GPU replicas Ray scales.

    serve run triposr_blender.server:deployment model=stabilityai/TripoSR token_file=/etc/triposr-token \\
        max_replicas=8 num_gpus=1

Two deployments. The API (``TripoSRApi``, one replica) keeps the job table and the queue, so a job's id means
the same on every request, as on one machine. The model (``TripoSRModel``) runs each job with the
pipeline's own API (``worker.pipeline.Pipeline``) in its replica's process, one model per replica,
``num_gpus`` each; Ray adds replicas while jobs wait, up to ``max_replicas``, and removes them when idle. A
studio grows from one GPU box to a cluster without a change of protocol: clients see the API of ``app``.

Arguments (``key=value`` after ``serve run``): model, token_file, max_queue, max_upload_mb, result_ttl,
min_replicas, max_replicas, num_gpus (default 1; 0 runs on CPUs), num_cpus (default 1). Serve's HTTP address
is Serve's own setting (``http_options``, loopback by default); without a token the API answers requests
from this machine only, wherever Serve listens. Without a cluster (no ``--address``, no RAY_ADDRESS, none
started by ``ray start``), the Ray that ``serve run`` needs is started on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ray import serve

from .. import ray_cluster
from ..backends.backend import REMESH
from ..backends.types import EncodedImage, MeshResult, ModelSettings
from ..core import progress
from ..core.defaults import DEFAULT_MODEL_SOURCE
from ..worker import pipeline
from .app import create_app
from .jobs import CANCELLED, DONE, FAILED, TAKE_TIMEOUT, JobRequest, JobTable
from .settings import (
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_RESULT_TTL,
    ServerSettings,
    read_token,
)

MODEL_DEPLOYMENT = "TripoSRModel"
RUNNING_STAGE = "Running on the cluster"


class TripoSRModel:
    """One model, loaded once per replica, running jobs as the worker process runs them."""

    def __init__(self, model: str, device: str = "auto"):
        self.settings = ModelSettings(model, device=device)
        self.pipeline = pipeline.Pipeline()
        self.pipeline.load(self.settings, progress.ignore)  # loaded before the replica takes its first job

    def run(self, request: JobRequest) -> MeshResult:
        if request.kind == REMESH:
            return self.pipeline.remesh(request.data, request.options, self.settings, progress.ignore)
        return self.pipeline.generate(
            EncodedImage(request.data), request.options, self.settings, progress.ignore
        )


class RayExecutor:
    """Hands the API's queued jobs to the model deployment, up to ``parallel`` at once."""

    def __init__(self, app_name: str, parallel: int):
        self.app_name = app_name
        self.parallel = parallel
        self.devices = ["ray"]
        self._tasks: list[asyncio.Task] = []
        self._table: JobTable | None = None

    def start(self, table: JobTable) -> None:
        self._table = table
        handle = serve.get_deployment_handle(MODEL_DEPLOYMENT, app_name=self.app_name)
        self._tasks = [
            asyncio.get_running_loop().create_task(self.dispatch(handle)) for _ in range(self.parallel)
        ]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    def loaded(self) -> bool:
        return True  # replicas load their model before they take jobs

    async def dispatch(self, handle) -> None:
        while True:
            job = await asyncio.to_thread(self._table.take, TAKE_TIMEOUT)
            if job is not None:
                await self.run(handle, job)

    async def run(self, handle, job) -> None:
        job.advance(RUNNING_STAGE, 0.0)
        response = handle.run.remote(job.request)
        waiting = asyncio.ensure_future(awaited(response))
        while not waiting.done():
            if job.cancel_requested.is_set():
                response.cancel()
                waiting.cancel()
                self._table.finish(job, CANCELLED)
                return
            await asyncio.wait({waiting}, timeout=TAKE_TIMEOUT)
        try:
            self._table.finish(job, DONE, result=waiting.result())
        except Exception as error:  # a replica's failure fails its job alone, with the worker's message
            _kind, message = pipeline.describe_failure(getattr(error, "cause", None) or error, "the cluster")
            self._table.finish(job, FAILED, error=message)


async def awaited(response):
    return await response


def build(args: dict):
    """The Serve application: the API ingress and the model deployment, from ``serve run``'s arguments.

    Under ``serve run`` without a cluster, the Ray it needs is started here, on loopback (ray_cluster)."""
    settings = ServerSettings(
        model=args.get("model", DEFAULT_MODEL_SOURCE),
        token=read_token(Path(args["token_file"])) if args.get("token_file") else "",
        max_queue=int(args.get("max_queue", DEFAULT_MAX_QUEUE)),
        max_upload_bytes=int(args.get("max_upload_mb", DEFAULT_MAX_UPLOAD_MB)) << 20,
        result_ttl=float(args.get("result_ttl", DEFAULT_RESULT_TTL)),
    )
    ray_cluster.start_for_serve_run()
    max_replicas = int(args.get("max_replicas", 4))
    app = create_app(settings, RayExecutor(args.get("app_name", "default"), parallel=2 * max_replicas))

    @serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.1})
    @serve.ingress(app)
    class TripoSRApi:
        def __init__(self, model):
            self.model = model  # binding it makes the model deployment part of the application

    model = serve.deployment(
        TripoSRModel,
        name=MODEL_DEPLOYMENT,
        ray_actor_options={
            "num_gpus": float(args.get("num_gpus", 1)),
            "num_cpus": float(args.get("num_cpus", 1)),
        },
        autoscaling_config={
            "min_replicas": int(args.get("min_replicas", 1)),
            "max_replicas": max_replicas,
            "target_ongoing_requests": 1,
        },
    )
    device = "cpu" if float(args.get("num_gpus", 1)) == 0 else "auto"
    return TripoSRApi.bind(model.bind(settings.model, device))
