"""Headless batch: many images in, one coloured mesh file out per image (or all of them in one .blend).

Run it with Blender, or with Python and the ``bpy`` wheel, or over a Ray cluster; the batch's own arguments
follow ``--``::

    blender -b --python <extension folder>/batch/__main__.py -- INPUT... [options]
    python -m triposr_blender.batch -- INPUT... [options]
    python -m triposr_blender.batch -- INPUT... --ray [ADDRESS] [options]

``command`` is the command line; ``in_blender`` runs it in Blender, ``on_ray`` on Ray, and both share ``plan``
(inputs, output names, the report) and ``contact_sheet`` (report.html: every input's card, its pictures).
``--help`` documents every option. The model loads once per run (on Ray, once per worker). A bad image is
reported and skipped and the run goes on; the exit status is 1 when any image failed, 2 for a usage error
and 130 when interrupted.
Each output is written to a temporary name first and moved into place when complete, so ``--skip-existing``
can resume an interrupted run without trusting a half-written file. A file the run did not make is never
replaced unless ``--overwrite`` says so, and every output folder is checked before the first image.
"""
