"""Run the TripoSR server: ``python -m triposr_blender.server --model <repo id or folder> [options]``.

The model loads once per device, in the same worker processes the add-on runs inside Blender, and the server
answers the API of ``app`` on http(s)://HOST:PORT. Without a token it listens on loopback only: a server bound
to any other address refuses to start without ``--token-file``. SIGTERM (or Ctrl+C) ends it cleanly: the
queued and running jobs end cancelled and the worker processes stop.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import uvicorn

from ..backends.addresses import is_loopback
from ..core.defaults import DEFAULT_MODEL_SOURCE
from ..core.errors import TripoSRError
from ..options import absolute_model_source
from .app import create_app
from .guard import MAX_HEADER_BYTES, guarded_protocol
from .local import LocalExecutor, resolve_devices
from .settings import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_RESULT_TTL,
    ServerConfigError,
    ServerSettings,
    read_token,
)

EXIT_FAILED = 1
EXIT_USAGE = 2
DEFAULT_PORT = 8700
GRACEFUL_SHUTDOWN = 10  # seconds the open connections get to end after the jobs have ended


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m triposr_blender.server",
        description="Serve TripoSR to the add-on and other clients over HTTP (API: /docs on the server).",
    )
    parser.add_argument(
        "--model",
        type=absolute_model_source,
        default=DEFAULT_MODEL_SOURCE,
        help="Hugging Face repo id or a model folder",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default: {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        help="file holding the token clients must send (Authorization: Bearer <token>), readable by its "
        "owner alone (chmod 600); needed to listen beyond loopback",
    )
    parser.add_argument(
        "--devices",
        default="auto",
        help="auto (every CUDA GPU, else MPS, else the CPU) or e.g. cuda:0,cuda:1",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULT_MAX_QUEUE,
        help=f"jobs that may wait (default: {DEFAULT_MAX_QUEUE})",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=int,
        default=DEFAULT_MAX_UPLOAD_MB,
        help=f"largest upload (default: {DEFAULT_MAX_UPLOAD_MB} MB)",
    )
    parser.add_argument(
        "--result-ttl",
        type=float,
        default=DEFAULT_RESULT_TTL,
        help=f"seconds a finished job's result is kept (default: {DEFAULT_RESULT_TTL:g})",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        help="seconds a client may stall while sending a request before it is dropped (default: "
        f"{DEFAULT_IDLE_TIMEOUT:g})",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (clients poll often)")
    parser.add_argument("--tls-cert", type=Path, help="TLS certificate (PEM): serve HTTPS")
    parser.add_argument("--tls-key", type=Path, help="TLS private key (PEM), with --tls-cert")
    return parser.parse_args(argv)


def check_startable(args: argparse.Namespace, token: str) -> None:
    """Refuse, before anything loads or listens, what would expose the server or fail later."""
    if not token and not is_loopback(args.host):
        raise ServerConfigError(
            f"Refusing to listen on {args.host} without a token: anyone who can reach it could use this "
            "machine's GPUs. Give --token-file (a file holding a long random token), or listen on 127.0.0.1."
        )
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ServerConfigError("--tls-cert and --tls-key go together.")
    for option, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path is not None and not path.is_file():
            raise ServerConfigError(f"{option} {path}: no such file.")


class Server(uvicorn.Server):
    """uvicorn's server, ending the jobs as soon as it is asked to stop (SIGTERM, Ctrl+C): the clients
    following them hear "cancelled" at once, rather than a stream cut when the connections are closed."""

    def __init__(self, config: uvicorn.Config, end_jobs):
        super().__init__(config)
        self.end_jobs = end_jobs

    def handle_exit(self, sig, frame) -> None:
        # A signal handler runs between any two bytecodes: the job table is changed from the event loop.
        asyncio.get_running_loop().call_soon_threadsafe(self.end_jobs)
        super().handle_exit(sig, frame)


def serve(args: argparse.Namespace) -> None:
    token = read_token(args.token_file)
    check_startable(args, token)
    settings = ServerSettings(
        model=args.model,
        token=token,
        max_queue=args.max_queue,
        max_upload_bytes=args.max_upload_mb << 20,
        result_ttl=args.result_ttl,
        idle_timeout=args.idle_timeout,
    )
    devices = resolve_devices(args.devices)
    app = create_app(settings, LocalExecutor(settings.model, devices))
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        http=guarded_protocol(settings.idle_timeout),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        access_log=args.access_log,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )
    Server(config, app.state.end_jobs).run()


def main(argv: list[str] | None = None) -> int:
    """Serve until stopped; every way it cannot start is one message and an exit status."""
    args = parse_arguments(argv)
    try:
        serve(args)
    except ServerConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (TripoSRError, OSError) as error:  # a model that cannot load, a port in use, a bad certificate
        where = f" {error.filename}" if getattr(error, "filename", None) else ""
        print(f"error:{where} {getattr(error, 'strerror', None) or error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
