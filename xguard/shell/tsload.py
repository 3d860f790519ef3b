"""The tree-sitter parser for bash, loaded without the packages' `__init__`.

`import tree_sitter_bash` runs `from importlib.resources import files` (for a
highlight query xguard never reads), which pulls in pathlib, tempfile, shutil,
zipfile and typing; `import tree_sitter` imports typing for one Protocol. On a
command that needs the full parse that was about 20 ms of a ~50 ms budget.
Both packages keep their compiled code in one extension module, `_binding`,
next to `__init__.py`: this loads those two files directly. Where the layout
differs (another version, a zip, a vendored copy) it falls back to the
ordinary import, so only the speed depends on the layout, never the parse.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing is one of the imports this module exists to avoid
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

    from tree_sitter import Parser


def _binding(package: str) -> ModuleType | None:
    """`package._binding`, loaded from the first sys.path entry that holds the
    package, or None when that entry has no such extension module."""
    name = f"{package}._binding"
    if name in sys.modules:
        return sys.modules[name]
    from importlib.machinery import EXTENSION_SUFFIXES, ExtensionFileLoader, ModuleSpec

    for entry in sys.path:
        folder = os.path.join(entry or os.curdir, package)
        try:
            names = set(os.listdir(folder))
        except OSError:
            continue
        # The first entry holding the package is the one `import` would use.
        for suffix in EXTENSION_SUFFIXES:
            if f"_binding{suffix}" in names:
                path = os.path.join(folder, f"_binding{suffix}")
                loader = ExtensionFileLoader(name, path)
                spec = ModuleSpec(name, loader, origin=path)
                with _stand_ins(package == "tree_sitter"):
                    module = loader.create_module(spec)
                    loader.exec_module(module)
                # Registered so that a later `import tree_sitter` (whose
                # `__init__` does `from ._binding import …`) shares these types.
                sys.modules[name] = module
                return module
        return None
    return None


class _stand_ins:
    """While tree-sitter's extension module starts, `re` and `enum` (about 10 ms
    together) are stand-ins: it only keeps `re.compile`, for query predicates
    xguard never uses (the stand-in imports the real `re` when called), and
    builds its `LogType` with `enum.IntEnum`, for parser logging xguard never
    turns on (here a plain int subclass with the same members). Where either
    module is loaded already the real one is used; so the stand-ins only ever
    appear in a process that has imported little (the single-threaded hot
    path), and only while the extension starts."""

    def __init__(self, wanted: bool) -> None:
        self.wanted = wanted  # tree-sitter's own module only, not the grammar's

    def __enter__(self) -> None:
        self.placed = [n for n in ("re", "enum") if n not in sys.modules]
        if not self.wanted or self.placed != ["re", "enum"]:
            self.placed = []
            return
        mod = type(sys)
        re = mod("re")
        vars(re)["compile"] = _compile
        enum = mod("enum")
        vars(enum)["IntEnum"] = _int_enum
        sys.modules["re"], sys.modules["enum"] = re, enum

    def __exit__(self, *exc: object) -> None:
        for n in self.placed:
            sys.modules.pop(n, None)


def _compile(pattern: Any, flags: int = 0) -> Any:
    import re

    return re.compile(pattern, flags)


def _int_enum(name: str, members: dict[str, int]) -> type:
    return type(name, (int,), dict(members))


def _direct() -> tuple[ModuleType, ModuleType] | None:
    """Both extension modules, or None when either is not where expected."""
    try:
        ts, bs = _binding("tree_sitter"), _binding("tree_sitter_bash")
    except (ImportError, OSError):
        return None
    if ts is None or bs is None or not hasattr(ts, "Parser") or not hasattr(bs, "language"):
        return None
    return ts, bs


def bash_parser() -> Parser:
    """A new tree-sitter Parser for the bash grammar."""
    found = _direct()
    if found is None:
        import tree_sitter
        import tree_sitter_bash

        found = tree_sitter, tree_sitter_bash
    ts, bs = found
    parser: Parser = ts.Parser(ts.Language(bs.language()))
    return parser
