"""Ray as a user without a cluster has it: for the tests of what the product starts itself."""

import os
import tempfile


def without_a_cluster():
    """The environment of a user with no Ray cluster on this machine, and without the tests' own setting
    that keeps Ray on loopback (conftest): what the product does, it must do itself."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")
    }
    # Ray finds a running cluster through a file in its temporary folder: a new folder has none. Short, since
    # Ray's Unix sockets live inside it.
    environment["TMPDIR"] = tempfile.mkdtemp(prefix="r", dir="/tmp")
    return environment
