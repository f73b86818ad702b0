"""The release's last step, after `make extension` built and validated the zip: check that CHANGELOG.md says
what this version changed, and write the zip's SHA-256 beside it (`sha256sum -c` reads it back)."""

import hashlib
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    version = tomllib.loads((REPO / "blender_manifest.toml").read_text(encoding="utf-8"))["version"]
    if f"## {version}" not in (REPO / "CHANGELOG.md").read_text(encoding="utf-8"):
        print(f"CHANGELOG.md has no section '## {version}': say what this version changed.", file=sys.stderr)
        return 1
    archive = REPO / "dist" / f"triposr_blender-{version}.zip"
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    checksum = archive.with_name(archive.name + ".sha256")
    checksum.write_text(f"{digest}  {archive.name}\n", encoding="utf-8")
    print(f"{archive} ({archive.stat().st_size / 1e3:.0f} kB)\n{checksum}: {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
