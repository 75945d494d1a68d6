"""The package's shape, checked from its source: no import cycle between mmbus modules (top-level or inside
functions) and no module over the size a maintainer reads in one sitting."""
import ast
import os.path as osp
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

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
    """Strongly connected components with more than one module (scipy's), each sorted."""
    names = sorted(set(graph) | {d for deps in graph.values() for d in deps})
    index = {n: i for i, n in enumerate(names)}
    edges = [(index[a], index[b]) for a, deps in graph.items() for b in deps]
    rows, cols = zip(*edges) if edges else ((), ())
    adjacency = csr_matrix((np.ones(len(edges)), (rows, cols)), shape=(len(names), len(names)))
    _, label = connected_components(adjacency, directed=True, connection='strong')
    comps = [sorted(n for n, lab in zip(names, label) if lab == c) for c in set(label.tolist())]
    return sorted(c for c in comps if len(c) > 1)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert cycles({'a': {'b'}, 'b': set()}) == []
    assert cycles({'a': {'b'}, 'b': {'a'}, 'c': {'d'}, 'd': {'c', 'a'}}) == [['a', 'b'], ['c', 'd']]


def test_no_import_cycle_in_the_package():
    modules = _modules()
    graph = import_graph(modules)
    assert graph['mmbus.reporting.report'] >= {'mmbus.reporting.context', 'mmbus.reporting.results'}  # the reader works
    assert cycles(graph) == []


def test_no_module_over_the_size_limit():
    sizes = {osp.relpath(f, PKG.parent): len(f.read_text().splitlines()) for f in _modules().values()}
    assert {f: n for f, n in sizes.items() if n > MAX_LINES} == {}


def test_reports_never_import_the_study_engine():
    """A report is a function of the work dir: nothing under mmbus.reporting reaches mmbus.study, directly or
    through another module."""
    graph = import_graph(_modules())
    seen, todo = set(), [m for m in graph if m.startswith('mmbus.reporting')]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph.get(m, ())
    assert graph['mmbus.study.engine'] & {'mmbus.reporting.context', 'mmbus.reporting.results'}  # the walk sees
    assert sorted(m for m in seen if m.startswith('mmbus.study')) == []


def test_the_study_engine_stays_lean():
    """The engine (spec -> stages -> rows) within the ~1,600 lines a maintainer can hold; reports live apart."""
    engine = sum(len(f.read_text().splitlines()) for f in (PKG / 'study').glob('*.py'))
    assert engine <= 1600, f'mmbus/study/ has {engine} lines'
