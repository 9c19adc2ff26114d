"""The package's imports point down: no import loops, counting function-level imports.

Every module of ``cnnlab`` is parsed with ``ast`` (nothing is imported), every ``import cnnlab.x``
and ``from cnnlab.x import y`` anywhere in it (module level, inside functions, under
``TYPE_CHECKING``) becomes an edge to the module it names (``y`` itself when it is a submodule),
and the strongly connected components of that graph are the loops. The floors table of
docs/architecture.md is read and checked too: a module may import only from its own floor or
below, and every module of the package is on a floor.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "cnnlab"

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def read_floors(doc: Path = DOC) -> list[set[str]]:
    """The floors table of docs/architecture.md: ground up, the top-level modules of each."""
    text = doc.read_text(encoding="utf-8")
    table = text.split("<!-- floors:begin", 1)[1].split("<!-- floors:end -->", 1)[0]
    floors = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            assert int(cells[0]) == len(floors), f"{doc}: floor {cells[0]} out of order"
            floors.append(set(re.findall(r"`([\w_]+)`", cells[1])))
    return floors


FLOORS = read_floors()


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(target: str, modules: dict[str, Path]) -> str | None:
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The cnnlab modules that ``name`` imports anywhere in its file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]  # fmt: skip
        else:
            continue
        for target in targets:
            if target == "cnnlab" or target.startswith("cnnlab."):
                resolved = _resolve(target, modules)
                if resolved and resolved != name and resolved != "cnnlab":
                    found.add(resolved)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components with more than one module are loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    loops.append(sorted(component))
    return loops


def floor_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for level, names in enumerate(FLOORS):
        if top in names:
            return level
    raise AssertionError(f"{module}: top-level name {top!r} is on no floor (add it to FLOORS)")


def test_no_import_loops() -> None:
    modules = all_modules()
    loops = strongly_connected(import_graph())
    described = [
        " <-> ".join(str(modules[m].relative_to(SRC.parent)) for m in loop) for loop in loops
    ]
    assert not loops, "import loops:\n" + "\n".join(described)


def test_imports_point_down_the_floors() -> None:
    upward = []
    for module, targets in import_graph().items():
        if module == "cnnlab":
            continue
        for target in targets:
            if floor_of(target) > floor_of(module):
                upward.append(f"{module} (floor {floor_of(module)}) imports {target} "
                              f"(floor {floor_of(target)})")  # fmt: skip
    assert not upward, "imports that run back up:\n" + "\n".join(sorted(upward))


def test_the_checker_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    # The analysis itself, on a two-module loop hidden inside a function.
    modules = {"cnnlab.a": tmp_path / "a.py", "cnnlab.b": tmp_path / "b.py"}
    modules["cnnlab.a"].write_text("from cnnlab.b import f\n")
    modules["cnnlab.b"].write_text("def f():\n    from cnnlab import a\n    return a\n")
    graph = {n: imports_of(n, p, modules) for n, p in modules.items()}
    assert graph == {"cnnlab.a": {"cnnlab.b"}, "cnnlab.b": {"cnnlab.a"}}
    assert strongly_connected(graph) == [["cnnlab.a", "cnnlab.b"]]


def test_every_file_the_architecture_page_names_exists() -> None:
    names = set(re.findall(r"`((?:[\w]+/)*[\w]+\.py)", DOC.read_text(encoding="utf-8")))
    root = PKG.parents[1]  # tests/... paths are relative to the repository
    examples = {"cli/my_cmd.py"}  # the how-to's made-up file
    missing = sorted(
        n for n in names - examples if not (PKG / n).is_file() and not (root / n).is_file()
    )
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"
