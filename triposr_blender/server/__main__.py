"""Run the TripoSR server: ``python -m triposr_blender.server --model <repo id or folder> [options]``.

The model loads once per device, in the same worker processes the add-on runs inside Blender, and the server
answers the API of ``app`` on http(s)://HOST:PORT. Without a token it listens on loopback only: a server bound
to any other address refuses to start without ``--token-file``. SIGTERM (or Ctrl+C) ends it cleanly: the
queued and running jobs end cancelled and the worker processes stop.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from ..core.defaults import DEFAULT_MODEL_SOURCE
from .app import ServerSettings, create_app
from .local import LocalExecutor, resolve_devices

EXIT_USAGE = 2


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m triposr_blender.server",
        description="Serve TripoSR to the add-on and other clients over HTTP (API: /docs on the server).",
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL_SOURCE, help="Hugging Face repo id or a model folder"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument(
        "--token-file",
        type=Path,
        help="file holding the token clients must send (Authorization: Bearer <token>); needed to listen "
        "beyond loopback",
    )
    parser.add_argument(
        "--devices",
        default="auto",
        help="auto (every CUDA GPU, else MPS, else the CPU) or e.g. cuda:0,cuda:1",
    )
    parser.add_argument("--max-queue", type=int, default=64, help="jobs that may wait (default: 64)")
    parser.add_argument("--max-upload-mb", type=int, default=32, help="largest upload (default: 32 MB)")
    parser.add_argument(
        "--result-ttl",
        type=float,
        default=3600.0,
        help="seconds a finished job's result is kept (default: 3600)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (clients poll often)")
    parser.add_argument("--tls-cert", type=Path, help="TLS certificate (PEM): serve HTTPS")
    parser.add_argument("--tls-key", type=Path, help="TLS private key (PEM), with --tls-cert")
    return parser.parse_args(argv)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def read_token(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise SystemExit(f"Cannot read the token file {path}: {error.strerror or error}.") from error
    if len(token) < 16:
        raise SystemExit(f"The token in {path} is too short: use at least 16 random characters.")
    return token


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    token = read_token(args.token_file)
    if not token and not is_loopback(args.host):
        print(
            f"Refusing to listen on {args.host} without a token: anyone who can reach it could use this "
            "machine's GPUs. Give --token-file (a file holding a long random token), or listen on 127.0.0.1.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if bool(args.tls_cert) != bool(args.tls_key):
        print("--tls-cert and --tls-key go together.", file=sys.stderr)
        return EXIT_USAGE
    import uvicorn

    settings = ServerSettings(
        model=args.model,
        token=token,
        max_queue=args.max_queue,
        max_upload_bytes=args.max_upload_mb << 20,
        result_ttl=args.result_ttl,
    )
    devices = resolve_devices(args.devices)
    app = create_app(settings, LocalExecutor(settings.model, devices))
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        access_log=args.access_log,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
