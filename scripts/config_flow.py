#!/usr/bin/env python3
"""How often ``config`` makes the code bounce between files, by static analysis
(the standard library's ``ast`` only; nothing is imported or run):

  python scripts/config_flow.py --entry multimix_jax/evaluate.py:evaluate [--tree] [--root DIR]

From the entry function, follow every call that passes ``config`` on, recursively, and count
the calls that re-enter a file the walk had already left. Prints JSON: the total, the count per
file and the number of calls followed (with ``--tree``, the call tree first).

The rule, exactly:
  * Config values: the entry's ``config`` parameter; in a callee, every parameter that
    receives a config value; every local name bound to one (``data = config.data``; tuples
    element by element, also the rows of a literal tuple a ``for`` loop unpacks); and any
    access path on one: attributes, subscripts and the mapping methods get/items/keys/values
    (``config.data``, ``data.image_size``, ``spec["path"]``, ``data.eval_sets.items()``).
    A value computed from config (a call's result, arithmetic, a new tuple, a ``Plan``) is
    not one.
  * A followed call is a call of a function of the package with a config value among its
    arguments, anywhere in the function (lambdas and nested functions included) except in a
    ``raise`` statement. Calls resolve through ``module.func``, ``from x import f``,
    ``Class(...)`` (its ``__init__``), ``Class.method``, ``self.method`` and
    ``functools.partial(f, ...)`` (a call of f where the partial is made); calls of other
    libraries and of methods of objects are not followed.
  * Each call site is one node of the tree (a function called from two lines is two nodes);
    a function already on the path from the entry is not followed again (cycles).
  * The walk is depth first, each function's calls in the order they run (a call's
    arguments before the call). Its file sequence is the file of every node in walk order,
    the entry's first. A node re-enters its file F when F occurs earlier in the sequence but
    is not the file of the node just before it.

docs/results/structure.md has the counts per file at several commits, with their commands.
"""

from __future__ import annotations

import argparse
import ast
import collections
import dataclasses
import json
import pathlib
import sys
from typing import Iterator

MAPPING_METHODS = ("get", "items", "keys", "values")
PARTIAL = ("external", "functools.partial")


@dataclasses.dataclass
class Function:
    """A function or method of the package."""

    module: str
    qualname: str
    node: ast.FunctionDef | ast.AsyncFunctionDef
    path: str
    cls: str | None = None

    @property
    def key(self) -> str:
        return f"{self.module}:{self.qualname}"


@dataclasses.dataclass
class Module:
    """A module of the package: its top-level functions, classes' methods and imports."""

    name: str
    path: str
    functions: dict[str, Function]
    classes: dict[str, dict[str, Function]]
    imports: dict[str, tuple[str, str | None]]  # local name -> (module, attribute or None)


@dataclasses.dataclass
class Node:
    """One call of the tree: the function called and the caller's line (0: the entry)."""

    function: Function
    line: int
    children: list["Node"] = dataclasses.field(default_factory=list)


def _imports(body: list[ast.stmt], module: str, is_package: bool) -> dict:
    """Local name -> (module, name within it or None for the module itself)."""
    out = {}
    for node in body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    out[alias.asname] = (alias.name, None)
                else:
                    out[alias.name.split(".")[0]] = (alias.name.split(".")[0], None)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                parts = parts if is_package else parts[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                out[alias.asname or alias.name] = (base, alias.name)
    return out


def index_package(root: pathlib.Path, package: str) -> dict[str, Module]:
    """Every module of ``package`` under ``root``: its functions, classes and imports."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root)
        is_package = path.name == "__init__.py"
        name = ".".join(rel.parent.parts if is_package else rel.with_suffix("").parts)
        tree = ast.parse(path.read_text(), str(rel))
        functions, classes = {}, {}
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions[node.name] = Function(name, node.name, node, str(rel))
            elif isinstance(node, ast.ClassDef):
                classes[node.name] = {
                    item.name: Function(name, f"{node.name}.{item.name}", item, str(rel), node.name)
                    for item in node.body
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
        modules[name] = Module(name, str(rel), functions, classes,
                               _imports(tree.body, name, is_package))
    return modules


class Resolver:
    """Call expressions -> functions of the package."""

    def __init__(self, modules: dict[str, Module]):
        self.modules = modules

    def symbol(self, module: str, name: str, depth: int = 0):
        """What ``name`` means in ``module``: ('module', m), ('function', f), ('class', (m, c))."""
        mod = self.modules.get(module)
        if mod is None or depth > 5:  # depth: a chain of re-exports
            return None
        if f"{module}.{name}" in self.modules and name not in mod.imports:
            return "module", f"{module}.{name}"
        if name in mod.functions:
            return "function", mod.functions[name]
        if name in mod.classes:
            return "class", (module, name)
        if name in mod.imports:
            target, attr = mod.imports[name]
            return self.imported(target, attr, depth + 1)
        return None

    def imported(self, target: str, attr: str | None, depth: int = 0):
        """What ``from target import attr`` (``import target`` for None) binds."""
        if target == "functools" and attr == "partial":
            return PARTIAL
        if attr is None:
            return ("module", target) if target in self.modules else None
        if f"{target}.{attr}" in self.modules:
            return "module", f"{target}.{attr}"
        return self.symbol(target, attr, depth)

    def resolve(self, func: ast.expr, scope: dict, cls: tuple[str, str] | None) -> Function | None:
        """The package function ``func`` names in ``scope`` (local name -> symbol)."""
        if isinstance(func, ast.Name):
            return self._callable(scope.get(func.id))
        if isinstance(func, ast.Attribute):
            if isinstance(func.value, ast.Name) and func.value.id == "self" and cls:
                return self.modules[cls[0]].classes[cls[1]].get(func.attr)
            base = self.resolve_value(func.value, scope)
            if base is None:
                return None
            kind, value = base
            if kind == "module":
                return self._callable(self.symbol(value, func.attr))
            if kind == "class":
                return self.modules[value[0]].classes[value[1]].get(func.attr)
        return None

    def resolve_value(self, expr: ast.expr, scope: dict):
        """The module or class a dotted name stands for."""
        if isinstance(expr, ast.Name):
            return scope.get(expr.id)
        if isinstance(expr, ast.Attribute):
            base = self.resolve_value(expr.value, scope)
            if base and base[0] == "module":
                return self.symbol(base[1], expr.attr)
        return None

    def _callable(self, symbol) -> Function | None:
        if symbol is None or symbol == PARTIAL:
            return None
        kind, value = symbol
        if kind == "function":
            return value
        if kind == "class":
            return self.modules[value[0]].classes[value[1]].get("__init__")
        return None


def _is_partial(func: ast.expr, scope: dict) -> bool:
    if isinstance(func, ast.Attribute) and func.attr == "partial":
        return isinstance(func.value, ast.Name) and func.value.id == "functools"
    return isinstance(func, ast.Name) and scope.get(func.id) == PARTIAL


def _is_tainted(expr: ast.expr, tainted: set[str]) -> bool:
    """A tainted name or an access path on one (attribute, subscript, mapping method)."""
    while True:
        if isinstance(expr, ast.Name):
            return expr.id in tainted
        if isinstance(expr, (ast.Attribute, ast.Subscript)):
            expr = expr.value
        elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and \
                expr.func.attr in MAPPING_METHODS:
            expr = expr.func.value
        elif isinstance(expr, ast.Starred):
            expr = expr.value
        else:
            return False


def _targets(target: ast.expr) -> Iterator[str]:
    """The names an assignment target binds."""
    for node in ast.walk(target):
        if isinstance(node, ast.Name):
            yield node.id


def _bind(target: ast.expr, value: ast.expr, tainted: set[str]) -> bool:
    """Taints the names ``target`` binds from a tainted ``value``; True if any was new."""
    if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
            and len(target.elts) == len(value.elts):
        return any([_bind(t, v, tainted) for t, v in zip(target.elts, value.elts)])
    if not _is_tainted(value, tainted):
        return False
    new = set(_targets(target)) - tainted
    tainted |= new
    return bool(new)


def local_taint(node: ast.AST, tainted: set[str]) -> set[str]:
    """``tainted`` plus the names ``node`` binds from config values (to a fixed point)."""
    tainted = set(tainted)
    literals = {item.targets[0].id: item.value for item in ast.walk(node)
                if isinstance(item, ast.Assign) and len(item.targets) == 1
                and isinstance(item.targets[0], ast.Name)
                and isinstance(item.value, (ast.Tuple, ast.List))}
    changed = True
    while changed:
        changed = False
        for item in ast.walk(node):
            if isinstance(item, ast.Assign):
                for target in item.targets:
                    changed |= _bind(target, item.value, tainted)
            elif isinstance(item, (ast.AnnAssign, ast.NamedExpr)) and item.value is not None:
                changed |= _bind(item.target, item.value, tainted)
            elif isinstance(item, (ast.For, ast.AsyncFor, ast.comprehension)):
                rows = literals.get(item.iter.id) if isinstance(item.iter, ast.Name) else item.iter
                for row in rows.elts if isinstance(rows, (ast.Tuple, ast.List)) else []:
                    # for a, b in ((config.x, 1), (config.y, 2)): row by row
                    changed |= _bind(item.target, row, tainted)
                changed |= _bind(item.target, item.iter, tainted)
            elif isinstance(item, (ast.With, ast.AsyncWith)):
                for with_item in item.items:
                    if with_item.optional_vars is not None:
                        changed |= _bind(with_item.optional_vars, with_item.context_expr, tainted)
    return tainted


def _parameters(function: Function) -> tuple[list[str], str | None, str | None]:
    """(positional parameters less self/cls, *args name, **kwargs name)."""
    args = function.node.args
    positional = [a.arg for a in args.posonlyargs + args.args]
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod"
                 for d in function.node.decorator_list)
    if function.cls and positional and not static:
        positional = positional[1:]  # self / cls
    return (positional, args.vararg and args.vararg.arg, args.kwarg and args.kwarg.arg)


def callee_taint(function: Function, args: list[ast.expr], keywords: list[ast.keyword],
                 tainted: set[str]) -> set[str]:
    """The parameters of ``function`` that receive a tainted value at this call."""
    positional, vararg, kwarg = _parameters(function)
    names = {a.arg for a in function.node.args.posonlyargs + function.node.args.args
             + function.node.args.kwonlyargs}
    out = set()
    for i, arg in enumerate(args):
        if _is_tainted(arg, tainted):
            if i < len(positional):
                out.add(positional[i])
            elif vararg:
                out.add(vararg)
    for keyword in keywords:
        if keyword.value is not None and _is_tainted(keyword.value, tainted):
            if keyword.arg in names:
                out.add(keyword.arg)
            elif kwarg:
                out.add(kwarg)
    return out


def _scope(resolver: Resolver, function: Function) -> dict:
    """Local name -> symbol: the module's names, then the function's own imports."""
    module = resolver.modules[function.module]
    scope = {}
    for name in set(module.functions) | set(module.classes) | set(module.imports):
        symbol = resolver.symbol(function.module, name)
        if symbol is not None:
            scope[name] = symbol
    local = [n for n in ast.walk(function.node) if isinstance(n, (ast.Import, ast.ImportFrom))]
    for name, (target, attr) in _imports(local, function.module,
                                         module.path.endswith("__init__.py")).items():
        symbol = resolver.imported(target, attr)
        if symbol is not None:
            scope[name] = symbol
    return scope


def _calls(node: ast.AST) -> list[ast.Call]:
    """The calls of a function body in the order they run (by where each call ends, so that
    ``f(g(x))`` gives g, then f), less those of ``raise`` statements."""
    raised = {id(n) for r in ast.walk(node) if isinstance(r, ast.Raise) for n in ast.walk(r)}
    calls = [n for n in ast.walk(node) if isinstance(n, ast.Call) and id(n) not in raised]
    return sorted(calls, key=lambda c: (c.end_lineno, c.end_col_offset))


def build_tree(resolver: Resolver, function: Function, tainted: set[str], line: int = 0,
               path: tuple[str, ...] = ()) -> Node:
    """The call tree below ``function`` when ``tainted`` are its config-carrying parameters."""
    node = Node(function, line)
    path = path + (function.key,)
    scope = _scope(resolver, function)
    tainted = local_taint(function.node, tainted)
    cls = (function.module, function.cls) if function.cls else None
    for call in _calls(function.node):
        func, args = call.func, list(call.args)
        if _is_partial(func, scope) and args:
            func, args = args[0], args[1:]
        callee = resolver.resolve(func, scope, cls)
        if callee is None or callee.key in path:
            continue
        passed = callee_taint(callee, args, call.keywords, tainted)
        if passed:
            node.children.append(build_tree(resolver, callee, passed, call.lineno, path))
    return node


def walk(node: Node, depth: int = 0) -> Iterator[tuple[Node, int]]:
    """(node, depth) of the tree, depth first."""
    yield node, depth
    for child in node.children:
        yield from walk(child, depth + 1)


def reentries(root: Node) -> dict:
    """Total and per-file re-entries of the depth-first walk (see the module docstring)."""
    sequence = [node.function.path for node, _ in walk(root)]
    per_file: collections.Counter = collections.Counter()
    for i in range(1, len(sequence)):
        if sequence[i] in sequence[:i] and sequence[i] != sequence[i - 1]:
            per_file[sequence[i]] += 1
    return {"total": sum(per_file.values()), "per_file": dict(sorted(per_file.items())),
            "calls": len(sequence) - 1}


def render(root: Node) -> str:
    """The call tree, one call a line, indented by depth, re-entries marked."""
    seen: set[str] = set()
    lines, previous = [], None
    for node, depth in walk(root):
        path = node.function.path
        mark = " <- re-entry" if path in seen and path != previous else ""
        seen.add(path)
        previous = path
        called = f"  (line {node.line} of the caller)" if node.line else ""
        lines.append(f"{'  ' * depth}{node.function.qualname}  [{path}]{called}{mark}")
    return "\n".join(lines)


def analyse(root: pathlib.Path, entry: str, parameter: str = "config") -> Node:
    """The call tree from ``entry``: 'FILE.py:function' or 'FILE.py:Class.method', FILE
    relative to ``root`` and inside the package it names first."""
    file, _, qualname = entry.partition(":")
    rel = pathlib.Path(file)
    if not (root / rel).is_file() or not qualname:
        raise SystemExit(f"error: --entry {entry!r}: expected FILE.py:FUNCTION with FILE "
                         f"under --root {root}")
    modules = index_package(root, rel.parts[0])
    module = next((m for m in modules.values() if pathlib.Path(m.path) == rel), None)
    owner, _, method = qualname.rpartition(".")
    function = (module.classes.get(owner, {}).get(method) if owner else
                module.functions.get(qualname)) if module else None
    if function is None:
        raise SystemExit(f"error: --entry {entry!r}: {file} defines no function {qualname!r}")
    return build_tree(Resolver(modules), function, {parameter})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entry", required=True,
                        help="the function to start from, e.g. multimix_jax/evaluate.py:evaluate")
    parser.add_argument("--root", default=".", help="the repository root (default: .)")
    parser.add_argument("--parameter", default="config",
                        help="the entry's parameter to follow (default: config)")
    parser.add_argument("--tree", action="store_true", help="also print the call tree")
    args = parser.parse_args(argv)
    tree = analyse(pathlib.Path(args.root), args.entry, args.parameter)
    if args.tree:
        print(render(tree))
    print(json.dumps({"entry": args.entry, **reentries(tree)}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
