"""Which part of the package may import which (ARCHITECTURE.md), read from the source: one way, no cycles.

Every import counts, also one inside a function: a lazy import may save start-up time, never dodge a cycle.
"""

import ast
import sys
from pathlib import Path

from triposr_blender.core import TORCH_FREE_MODULES

PACKAGE = Path(__file__).resolve().parent.parent / "triposr_blender"
NAME = PACKAGE.name

ARCHITECTURE = PACKAGE.parent / "ARCHITECTURE.md"


def documented_layers() -> dict[str, set[str]]:
    """ARCHITECTURE.md's table: each layer (a sub-package, or a module at the top) and the layers it may
    import. The test enforces exactly what the document says."""
    rows = [line for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines() if line.startswith("| `")]
    layers = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        name = cells[0].strip("`").removesuffix("/").removesuffix(".py")
        allowed = (
            set()
            if cells[2] == "nothing of the package"
            else {item.strip().strip("`") for item in cells[2].split(",")}
        )
        layers["" if name == "__init__" else name] = allowed
    return layers


MAY_IMPORT = documented_layers()
# The layers that run outside Blender too (the worker process, plain Python): bpy is never theirs.
WITHOUT_BPY = {
    *("core", "options", "worker", "vendor_install", "server"),
    *("batch_plan", "batch_ray", "ray_cluster", "batch"),
}
# What Blender's own process imports when the add-on registers: none of it may pull PyTorch in.
IN_BLENDER = f"{NAME}.ui"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(module: str, top_level_only: bool = False) -> set[str]:
    """The names ``module`` imports (package modules resolved to their full names)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    statements = tree.body if top_level_only else list(ast.walk(tree))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in statements:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            target = ".".join(filter(None, [base, node.module]))
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in MODULES else target)
    return found


def package_imports(module: str, top_level_only: bool = False) -> set[str]:
    return {name for name in imports(module, top_level_only) if name in MODULES and name != module}


def test_every_layer_of_the_package_is_in_the_architecture_document():
    assert {layer(module) for module in MODULES} == set(MAY_IMPORT)


def test_no_module_imports_a_packages_main():
    assert not [module for module in MODULES for name in package_imports(module) if name.endswith("__main__")]


def test_every_layer_imports_only_the_layers_below_it():
    wrong = [
        f"{module} imports {imported}"
        for module in MODULES
        for imported in package_imports(module)
        if layer(imported) != layer(module) and layer(imported) not in MAY_IMPORT[layer(module)]
    ]
    assert not wrong, "\n".join(wrong)


def test_there_is_no_import_cycle():
    graph = {module: package_imports(module) for module in MODULES}
    cycles, done, path = [], set(), []

    def visit(module):
        if module in path:
            cycles.append(" -> ".join([*path[path.index(module) :], module]))
            return
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    assert not cycles, "\n".join(cycles)


def test_the_layers_that_run_outside_blender_never_import_bpy():
    wrong = [
        module
        for module in MODULES
        if layer(module) in WITHOUT_BPY and any(name.split(".")[0] == "bpy" for name in imports(module))
    ]
    assert not wrong


def test_what_blender_imports_at_registration_never_reaches_pytorch():
    reached, queue = set(), [IN_BLENDER, NAME]
    while queue:
        module = queue.pop()
        if module not in reached:
            reached.add(module)
            queue.extend(package_imports(module, top_level_only=True))
    core = f"{NAME}.core"
    torch_free = {core, *(f"{core}.{name}" for name in TORCH_FREE_MODULES)}
    assert {module for module in reached if module.startswith(core)} <= torch_free
    third_party = {name.split(".")[0] for module in reached for name in imports(module, top_level_only=True)}
    assert "torch" not in third_party


# Provided by Blender (and by the bpy wheel in tests), never installed by the add-on.
BLENDER_MODULES = {"bpy", "bpy_extras", "bmesh", "mathutils", "addon_utils"}


# The optional extras, each with its own requirements file; never installed into Blender.
EXTRAS = {
    "server": ("requirements-server.txt", "requirements-ray.txt"),
    "batch_ray": ("requirements-ray.txt",),
    "ray_cluster": ("requirements-ray.txt",),
}
# Import names of the extras' packages where they differ from the distribution's.
EXTRA_IMPORT_NAMES = {"python_multipart": "multipart"}


def declared_in(*files: str) -> set[str]:
    from triposr_blender import vendor_install

    lines = [line for name in files for line in vendor_install.read_requirements(PACKAGE.parent / name)]
    names = {vendor_install.import_name(line) for line in lines}
    return {EXTRA_IMPORT_NAMES.get(name, name) for name in names}


def third_party_imports(modules) -> set[str]:
    imported = {name.split(".")[0] for module in modules for name in imports(module)}
    return imported - set(sys.stdlib_module_names) - BLENDER_MODULES - {NAME, ""}


def test_every_package_the_add_on_imports_is_declared_in_requirements_txt():
    in_blender = [module for module in MODULES if layer(module) not in EXTRAS]
    assert third_party_imports(in_blender) - declared_in("requirements.txt") == set()


def test_every_package_an_extra_imports_is_declared_in_its_requirements():
    for extra, files in EXTRAS.items():
        modules = [module for module in MODULES if layer(module) == extra]
        assert third_party_imports(modules) - declared_in("requirements.txt", *files) == set(), extra
