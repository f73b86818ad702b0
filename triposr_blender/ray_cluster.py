"""Joining a Ray cluster, or starting a Ray on this machine, for the optional extras: ``batch --ray`` and the
server on Ray Serve. Never in Blender.

A Ray this product starts listens on loopback only. An unauthenticated Ray reachable from the network runs
anyone's code as the user (CVE-2023-48022), and on Linux Ray binds its servers to every interface, even when
told ``_node_ip_address="127.0.0.1"`` (10 of 11 listeners, measured with tests/listeners.py). With its
multi-node mode off, as Ray runs on Windows and macOS, every one is on 127.0.0.1.

A cluster the user names (an address, ``RAY_ADDRESS``, or one that ``ray start`` began on this machine) is
theirs, and joined as it is, after a check that it answers at all: a wrong address fails in seconds with a
message, instead of Ray's minutes of retries.
"""

from __future__ import annotations

import os
import socket
import sys

import ray
from ray._private import ray_constants, utils

from .core.errors import TripoSRError

# Ray's switch for its multi-node mode; "0" keeps every server of a Ray started here on 127.0.0.1.
CLUSTERS_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
PROBE_TIMEOUT = 5.0  # seconds a cluster's address has to accept a connection
# `serve run` starts Ray in this namespace (ray.serve's SERVE_NAMESPACE) when it starts one itself.
SERVE_NAMESPACE = "serve"


class RayConnectionError(TripoSRError):
    """No Ray cluster answers where one was asked for; the text says what to do."""


def cluster_address(address: str | None, environ=os.environ) -> str | None:
    """The cluster to join for ``address`` as ``--ray`` takes it (empty: Ray's own choice, ``auto``: a
    running cluster only, HOST:PORT or ray://HOST:PORT); None when a Ray is to be started for this run."""
    if address and address != "auto":
        return address
    named = environ.get("RAY_ADDRESS") or utils.read_ray_address()
    if named:
        return named
    if address == "auto":
        raise RayConnectionError(
            "No Ray cluster runs on this machine (no RAY_ADDRESS, nothing started by `ray start`). Start "
            "one with `ray start --head`, give the address of a cluster, or leave the address out to start "
            "a Ray for this run alone."
        )
    return None


def check_answers(address: str) -> None:
    """Refuse, within PROBE_TIMEOUT, an address where nothing accepts a connection."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise RayConnectionError(f"{address} is not a Ray address: give HOST:PORT or ray://HOST:PORT.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT).close()
    except OSError as error:
        raise RayConnectionError(
            f"No Ray cluster answers at {address} ({error.strerror or error}). Check the address and that "
            "the cluster runs, or leave the address out to start a Ray for this run alone."
        ) from None


def connect(address: str | None, **init_options) -> bool:
    """Join the cluster ``address`` names, or start a Ray on loopback, unless this process is in one
    already; -> whether this call started the connection (and so ends it)."""
    if ray.is_initialized():
        return False
    cluster = cluster_address(address)
    if cluster is None:
        start_on_loopback(**init_options)
        return True
    check_answers(cluster)
    try:
        ray.init(address=cluster, **init_options)
    except ConnectionError as error:
        raise RayConnectionError(f"Could not join the Ray cluster at {cluster}: {error}") from None
    return True


def start_on_loopback(**init_options) -> None:
    """A new Ray on this machine whose every server listens on 127.0.0.1 only."""
    os.environ[CLUSTERS_VARIABLE] = "0"  # for the Ray processes started below (and theirs)
    # Ray reads the variable once, when imported: here it is imported already.
    ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(_node_ip_address="127.0.0.1", **init_options)


def start_for_serve_run(argv: list[str] | None = None, environ=os.environ) -> None:
    """Under ``serve run`` without a cluster, start its Ray here first, on loopback: ``serve run`` builds
    the application before it starts a Ray of its own, and would start one open to the network."""
    argv = sys.argv if argv is None else argv
    named = any(argument in ("--address", "-a") or argument.startswith("--address=") for argument in argv)
    if not ray.is_initialized() and not named and cluster_address("", environ) is None:
        start_on_loopback(namespace=SERVE_NAMESPACE)
