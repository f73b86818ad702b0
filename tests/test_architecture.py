"""Which part of the package may import which (ARCHITECTURE.md), read from the source: one way, no cycles.

Every import counts, also one inside a function: a lazy import may save start-up time, never dodge a cycle.
"""

import ast
import re
import sys
from pathlib import Path

from triposr_blender.core import TORCH_FREE_MODULES

PACKAGE = Path(__file__).resolve().parent.parent / "triposr_blender"
NAME = PACKAGE.name

ARCHITECTURE = PACKAGE.parent / "ARCHITECTURE.md"
STANDARD_LIBRARY = "the standard library"


def cell_items(cell: str) -> set[str]:
    return {item.strip().strip("`") for item in cell.split(",")} - {""}


def unit_name(cell: str) -> str:
    """A row's part as the test names it: "core", "backends/remote", "batch/plan", "" for ``__init__.py``."""
    name = cell.strip("`").removesuffix("/").removesuffix(".py")
    return "" if name == "__init__" else name


def documented_parts() -> dict[str, dict]:
    """ARCHITECTURE.md's table: each part (a sub-package, a module in one, or a module at the top), the parts
    it may import, whether it may import bpy, and the requirements files its packages come from. The test
    enforces exactly what the document says."""
    rows = [line for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines() if line.startswith("| `")]
    parts = {}
    for row in rows:
        name, _what, may_import, bpy, packages, _why = (cell.strip() for cell in row.strip("|").split("|"))
        allowed = (
            set() if may_import == "nothing of the package" else set(map(unit_name, cell_items(may_import)))
        )
        parts[unit_name(name)] = {
            "may import": allowed,
            "bpy": bpy == "yes",
            "requirements": () if packages == STANDARD_LIBRARY else tuple(sorted(cell_items(packages))),
        }
    return parts


PARTS = documented_parts()
# What Blender's own process imports when the add-on registers: none of it may pull PyTorch in.
IN_BLENDER = f"{NAME}.ui"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def part(module: str) -> str:
    """The most specific row of the table that places ``module``."""
    path = module.split(".")[1:]
    for length in range(len(path), 0, -1):
        if "/".join(path[:length]) in PARTS:
            return "/".join(path[:length])
    return ""


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


def test_every_part_of_the_table_exists_and_every_module_has_its_row():
    top_level = {module.split(".")[1] for module in MODULES if "." in module}
    assert top_level <= {name.split("/")[0] for name in PARTS}, "a module or sub-package no row places"
    assert {part(module) for module in MODULES} == set(PARTS), "a row that places no module"


def test_no_module_imports_a_packages_main():
    assert not [module for module in MODULES for name in package_imports(module) if name.endswith("__main__")]


def test_every_part_imports_only_the_parts_its_row_names():
    wrong = [
        f"{module} imports {imported}"
        for module in MODULES
        for imported in package_imports(module)
        if part(imported) != part(module) and part(imported) not in PARTS[part(module)]["may import"]
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


def test_only_the_parts_whose_row_says_so_import_bpy():
    wrong = [
        module
        for module in MODULES
        if not PARTS[part(module)]["bpy"] and any(name.split(".")[0] == "bpy" for name in imports(module))
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


# Import names of packages where they differ from the distribution's.
IMPORT_NAMES = {"python_multipart": "multipart"}


def declared_in(*files: str) -> set[str]:
    from triposr_blender import vendor_install

    lines = [line for name in files for line in vendor_install.read_requirements(PACKAGE.parent / name)]
    names = {vendor_install.import_name(line) for line in lines}
    return {IMPORT_NAMES.get(name, name) for name in names}


def third_party_imports(modules) -> set[str]:
    imported = {name.split(".")[0] for module in modules for name in imports(module)}
    return imported - set(sys.stdlib_module_names) - BLENDER_MODULES - {NAME, ""}


def test_every_package_a_part_imports_comes_from_the_requirements_its_row_names():
    for name, documented in PARTS.items():
        modules = [module for module in MODULES if part(module) == name]
        undeclared = third_party_imports(modules) - declared_in(*documented["requirements"])
        assert not undeclared, f"{name or '__init__.py'} imports {undeclared}"


def test_the_extras_are_never_in_blenders_requirements():
    """The server, the batch on Ray and Ray itself need packages requirements.txt never installs."""
    in_blender = {
        name for name, documented in PARTS.items() if documented["requirements"] == ("requirements.txt",)
    }
    for name in ("server", "batch/on_ray", "ray_cluster"):
        assert name not in in_blender


ENVIRONMENT_VARIABLE = re.compile(r"\"(TRIPOSR_[A-Z_]+)\"")
NAMES_ENVIRONMENT_VARIABLES = {"options", "dependencies", "vendor_install"}


def test_each_environment_variable_is_named_once_in_the_installer_or_the_options():
    named = [
        (variable, part(module))
        for module, path in MODULES.items()
        for variable in ENVIRONMENT_VARIABLE.findall(path.read_text(encoding="utf-8"))
    ]
    variables = [variable for variable, _ in named]
    assert len(variables) == len(set(variables)), "a variable named twice"
    assert {where for _, where in named} <= NAMES_ENVIRONMENT_VARIABLES
