"""The seam between Blender (the panel, the batch) and every place the model runs: the ``Backend``
contract, its ``Job``, the typed values that cross it (``types``), and the one choice of backend
(``backend_for``). ``remote`` is the TripoSR server's backend; this computer's worker process is
``worker.client``'s."""
