"""The server's jobs on this machine: one worker process per device, the same worker the add-on runs in
Blender, with the model loaded once at start and kept.

Each device has a thread that takes the next queued job, hands it to its worker and follows it: progress into
the job, a cancel request on to the worker, the result or the error back. A worker that dies fails only its
job; it is started again (and the model loaded) at once, for the next.
"""

from __future__ import annotations

import threading

from ..backends.backend import REMESH
from ..backends.types import EncodedImage, ModelSettings
from ..worker.client import WorkerClient
from .jobs import CANCELLED, DONE, FAILED, TAKE_TIMEOUT, JobTable, ServerJob

FOLLOW_INTERVAL = 0.1


def resolve_devices(devices: str) -> list[str]:
    """``auto``: every CUDA GPU, else Apple's GPU, else the CPU; otherwise a comma-separated list."""
    if devices != "auto":
        return [device.strip() for device in devices.split(",") if device.strip()]
    import torch

    if torch.cuda.is_available():
        return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    return ["mps"] if torch.backends.mps.is_available() else ["cpu"]


class DeviceWorker:
    """One device's worker process, and the thread that feeds it jobs."""

    def __init__(self, table: JobTable, settings: ModelSettings):
        self.table = table
        self.settings = settings
        self.client = WorkerClient()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, name=f"triposr-{settings.device}", daemon=True)

    def start(self) -> None:
        self.client.load(self.settings)  # the model loads once, ahead of the first job
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5.0)
        self.client.stop()

    def serve(self) -> None:
        while not self.stopping.is_set():
            job = self.table.take(TAKE_TIMEOUT)
            if job is not None:
                self.run(job)

    def run(self, job: ServerJob) -> None:
        request = job.request
        if request.kind == REMESH:
            work = self.client.remesh(request.data, request.options, self.settings)
        else:
            work = self.client.generate(EncodedImage(request.data), request.options, self.settings)
        while (outcome := work.poll()) is None:
            if job.cancel_requested.is_set():
                self.client.cancel(work)
            job.advance(work.stage, work.fraction)
            work.finished.wait(FOLLOW_INTERVAL)
        if outcome.event == "result":
            self.table.finish(job, DONE, result=outcome.result)
        elif outcome.event == "cancelled":
            self.table.finish(job, CANCELLED)
        else:
            self.table.finish(job, FAILED, error=outcome.message)
            if outcome.kind == "WorkerDied" and not self.stopping.is_set():
                self.client.load(self.settings)  # a new worker, the model loaded again, for the next job


class LocalExecutor:
    """Runs the server's jobs on this machine's devices."""

    def __init__(self, model: str, devices: list[str]):
        self.model = model
        self.devices = devices
        self.workers: list[DeviceWorker] = []

    def start(self, table: JobTable) -> None:
        self.workers = [
            DeviceWorker(table, ModelSettings(self.model, device=device)) for device in self.devices
        ]
        for worker in self.workers:
            worker.start()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stopping.set()
        for worker in self.workers:
            worker.stop()

    def loaded(self) -> bool:
        return bool(self.workers) and all(worker.client.model_state.loaded for worker in self.workers)
