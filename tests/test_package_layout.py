"""The package's shape, checked from its source: no import cycle between mmbus modules (top-level or inside
functions) and no module over the size a maintainer reads in one sitting."""
import ast
import os.path as osp
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / 'mmbus'
MAX_LINES = 400


def _modules():
    out = {}
    for f in PKG.rglob('*.py'):
        parts = f.relative_to(PKG.parent).with_suffix('').parts
        name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
        out[name] = f
    return out


def import_graph(modules):
    """``{module: {mmbus modules it imports anywhere in its source}}``."""
    graph = {}
    for name, f in modules.items():
        pkg = name if f.name == '__init__.py' else name.rpartition('.')[0]
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg.split('.')[:len(pkg.split('.')) - node.level + 1] if node.level else []
                mod = '.'.join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f'{mod}.{alias.name}'
                    deps.add(sub if sub in modules else mod)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert cycles({'a': {'b'}, 'b': set()}) == []


def test_no_import_cycle_in_the_package():
    modules = _modules()
    graph = import_graph(modules)
    assert graph['mmbus.study.report'] >= {'mmbus.study.context', 'mmbus.study.results'}  # the reader works
    assert cycles(graph) == []


def test_no_module_over_the_size_limit():
    sizes = {osp.relpath(f, PKG.parent): len(f.read_text().splitlines()) for f in _modules().values()}
    assert {f: n for f, n in sizes.items() if n > MAX_LINES} == {}
