"""The package layout is the architecture (issue 10): imports point one way.

Layers, lowest first; a module may import its own layer and the ones below,
never one above, and the import graph of xguard/ has no cycles. Imports under
`if TYPE_CHECKING:` are for type checkers only and are not counted; imports
inside functions (the hot path's lazy ones) are.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "xguard"

LAYERS: list[tuple[str, ...]] = [
    (
        "xguard",
        "xguard.errors",
        "xguard.util",
        "xguard._record",
        "xguard.paths",
        "xguard.environment",
        "xguard.warm",
    ),
    ("xguard.shell",),
    ("xguard.policy",),
    ("xguard.audit",),
    ("xguard.gate",),
    ("xguard.approval",),
    ("xguard.strict",),
    ("xguard.adapters",),
    ("xguard.frontends",),
    ("xguard.commands", "xguard.__main__"),
]


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for i, names in enumerate(LAYERS):
        for n in names:
            if (module == n or module.startswith(n + ".")) and len(n) > best_len:
                # "xguard" alone names only the package's __init__, not every module
                if n == "xguard" and module != "xguard":
                    continue
                best, best_len = i, len(n)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS"
    return best


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return isinstance(t, ast.Name) and t.id == "TYPE_CHECKING"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for n in node.orelse:
                visit(n)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("xguard"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            if mod.startswith("xguard"):
                out.add(mod)
                for a in node.names:  # `from xguard.gate import limits` imports a module
                    if (PKG.parent / (mod.replace(".", "/") + "/" + a.name + ".py")).exists():
                        out.add(f"{mod}.{a.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out.discard(me)
    return out


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PKG.rglob("*.py"))}


def test_lower_layers_never_import_higher_ones() -> None:
    bad = []
    for mod, deps in graph().items():
        for d in sorted(deps):
            if layer_of(d) > layer_of(mod):
                bad.append(f"{mod} (layer {layer_of(mod)}) imports {d} (layer {layer_of(d)})")
    assert bad == []


def test_the_import_graph_has_no_cycles() -> None:
    g = graph()
    # A package's __init__ is imported with any of its modules: an edge to
    # "xguard.gate.limits" is also one to "xguard.gate".
    edges = {m: {d for d in deps if d in g} for m, deps in g.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                cycles.append([*stack[stack.index(d) :], d])
            elif d not in state:
                dfs(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            dfs(m)
    assert cycles == []


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("xguard.util", 0),
        ("xguard.shell.parser", 1),
        ("xguard.gate.pipeline", 4),
        ("xguard.commands.cli", 9),
    ],
)
def test_layer_table(module: str, layer: int) -> None:
    assert layer_of(module) == layer


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The test above could pass by seeing nothing: prove it sees imports."""
    deps = imports_of(PKG / "gate" / "pipeline.py")
    assert "xguard.util" in deps and "xguard.gate.limits" in deps
    assert layer_of("xguard.approval.wait") > layer_of("xguard.gate.pipeline")


# click is the command line's edge (issue 10, pre-commit's habit): the faces
# declare options and help, and call plain functions that take plain values
# and return an exit code.
CLICK_EDGE = {"xguard.commands.cli", "xguard.commands.faces"}


def third_party_imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_only_the_edge_knows_click() -> None:
    users = {module_name(p) for p in PKG.rglob("*.py") if "click" in third_party_imports(p)}
    assert users == CLICK_EDGE


def test_every_face_calls_a_plain_function_that_exists() -> None:
    """Each face names `module:function`; the function takes the face's
    parameters by name and the module imports no click."""
    import importlib
    import inspect

    import click

    from xguard.commands import faces

    seen = 0
    for obj in vars(faces).values():
        callback = getattr(obj, "callback", None)
        if not isinstance(obj, click.Command) or callback is None:
            continue
        target = next(
            (
                c.cell_contents
                for c in callback.__closure__ or ()
                if isinstance(c.cell_contents, str)
            ),
            None,
        )
        if target is None:  # a hot-path verb's face: hands its words to the dispatcher
            continue
        module, name = target.split(":")
        fn = getattr(importlib.import_module(module), name)
        assert "click" not in third_party_imports(Path(inspect.getfile(fn))), module
        params = set(inspect.signature(fn).parameters)
        assert params == {p.name for p in obj.params}, (target, params)
        seen += 1
    assert seen >= 25
