"""The Khronos glTF-Validator (npm's gltf-validator, which `make test` and `make test-lts` install in
.node/), run on a GLB: the verdict the glTF world trusts."""

import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VALIDATOR = REPO / ".node" / "node_modules" / "gltf-validator"
SCRIPT = """
const validator = require(process.argv[1]);
const chunks = [];
process.stdin.on("data", (chunk) => chunks.push(chunk));
process.stdin.on("end", () => validator.validateBytes(new Uint8Array(Buffer.concat(chunks))).then(
  (report) => console.log(JSON.stringify(report.issues)),
  (error) => { console.error(error); process.exit(1); }));
"""


def issues(glb: bytes) -> dict:
    """The validator's issues: numErrors, numWarnings, numInfos, numHints and their messages."""
    assert VALIDATOR.is_dir(), f"{VALIDATOR} is missing: run `make gltf-validator` (it installs it with npm)"
    run = subprocess.run(
        ["node", "-e", SCRIPT, str(VALIDATOR)], input=glb, capture_output=True, timeout=120, check=True
    )
    return json.loads(run.stdout)


def assert_valid(glb: bytes) -> None:
    report = issues(glb)
    assert (report["numErrors"], report["numWarnings"]) == (0, 0), report["messages"][:5]
