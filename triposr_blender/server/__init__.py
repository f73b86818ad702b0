"""The TripoSR server: artists without a GPU use the studio's, from the same panel.

``python -m triposr_blender.server`` (``__main__``) serves the HTTP API of ``app`` from this machine's devices
(``local``); ``serve run triposr_blender.server:deployment`` serves the same app on Ray Serve, whose GPU
replicas scale with the load (``ray_serve``). FastAPI, uvicorn and Ray are optional extras
(requirements-server.txt, requirements-ray.txt), never installed into Blender.
"""


def deployment(args: dict | None = None):
    """Ray Serve's application builder, for ``serve run triposr_blender.server:deployment model=...``
    (see ray_serve.build)."""
    from .ray_serve import build

    return build(args or {})
