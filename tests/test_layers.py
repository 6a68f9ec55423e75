"""The shape of the code, as a reader meets it: libraries never import a service, core knows
no domain, and no module imports itself back through others."""

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
LIBRARIES = {"esteira_core", "esteira_ruptura", "esteira_scraping"}
DOMAINS = {"esteira_ruptura", "esteira_scraping"}
SERVICES = {
    "esteira_api",
    "esteira_ruptura_worker",
    "esteira_scraper_worker",
    "esteira_cli",
    "esteira_portal",
    "esteira_testing",
    "esteira_devtools",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.glob("*/**/esteira_*/**/*.py"):
        if ".venv" in path.parts or "tests" in path.parts or "migrations" in path.parts:
            continue
        package = next(part for part in path.parts if part.startswith("esteira_"))
        parts = path.relative_to(path.parents[len(path.parts) - path.parts.index(package) - 1])
        name = ".".join(parts.with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.startswith("esteira_")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {imported for imported in _imports(path) if imported in modules} - {name}
        for name, path in modules.items()
    }


def test_the_modules_are_found() -> None:
    graph = _graph()
    assert "esteira_api.dispatch" in graph and "esteira_core.worker" in graph
    assert "esteira_core.worker" in graph["esteira_ruptura.worker"]


def test_no_library_imports_a_service_and_core_knows_no_domain() -> None:
    wrong = sorted(
        f"{module} imports {imported}"
        for module, imported_names in _graph().items()
        for imported in imported_names
        if (module.split(".")[0] in LIBRARIES and imported.split(".")[0] in SERVICES)
        or (module.startswith("esteira_core") and imported.split(".")[0] in DOMAINS)
    )
    assert wrong == []


def test_no_import_cycle() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported, [*path, imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
