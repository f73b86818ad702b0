"""What the TripoSR server adds: its latency over a local worker, and how many jobs per second it serves.

With the tiny fixture model (the model's own time is small, so the server's share shows), in one run:

- local: jobs one after another on a worker process, as Blender runs them (``WorkerClient``);
- server: the same jobs one after another through a server on 127.0.0.1 (``RemoteClient``: upload, polling
  every 0.25 s, result.npz), one device;
- throughput: 20 clients at once against that server.

    .venv/bin/python scripts/bench_server.py [--jobs 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from fixture_model import IMAGE, OPTIONS  # noqa: E402
from server_harness import TOKEN, Server  # noqa: E402

from triposr_blender.backends.remote import RemoteClient  # noqa: E402
from triposr_blender.backends.types import ImageFile, ModelSettings  # noqa: E402
from triposr_blender.options import GenerateOptions  # noqa: E402
from triposr_blender.worker.client import WorkerClient  # noqa: E402

JOB_TIMEOUT = 120


def seconds_per_job(client, jobs: int) -> list[float]:
    """Jobs one after another (after one to warm up), each timed from submit to result."""
    options, image = GenerateOptions(**OPTIONS), ImageFile(str(IMAGE))
    model = ModelSettings(str(REPO / "tests" / "fixtures" / "triposr-tiny-a"), device="cpu")
    client.generate(image, options, model).wait(JOB_TIMEOUT)
    times = []
    for _ in range(jobs):
        started = time.perf_counter()
        outcome = client.generate(image, options, model).wait(JOB_TIMEOUT)
        assert outcome.event == "result", outcome
        times.append(time.perf_counter() - started)
    return times


def throughput(url: str, clients: int = 20) -> float:
    """Jobs per second with ``clients`` clients at once, each sending one job."""
    options, image = GenerateOptions(**OPTIONS), ImageFile(str(IMAGE))
    started = time.perf_counter()

    def one():
        assert RemoteClient(url, TOKEN).generate(image, options).wait(JOB_TIMEOUT).event == "result"

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return clients / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()

    local = WorkerClient()
    try:
        local_times = seconds_per_job(local, args.jobs)
    finally:
        local.stop()
    with tempfile.TemporaryDirectory() as folder:
        server = Server(Path(folder))
        try:
            server_times = seconds_per_job(RemoteClient(server.url, TOKEN), args.jobs)
            rate = throughput(server.url)
        finally:
            server.stop()

    local_median, server_median = statistics.median(local_times), statistics.median(server_times)
    print(f"tiny model, {args.jobs} jobs one after another (median seconds per job)")
    print(f"  local worker           {local_median:.3f} s")
    print(f"  through the server     {server_median:.3f} s  (+{server_median - local_median:.3f} s added)")
    print(f"throughput, 20 clients at once, one CPU device: {rate:.1f} jobs/s")


if __name__ == "__main__":
    main()
