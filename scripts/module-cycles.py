#!/usr/bin/env python3
"""Checks that no crate of the host workspace has a circle between its top-level modules.

For each crate (runtime/src and runtime/*/src) it reads every module's `crate::x` paths, and in
a crate's top-level files also `super::x` (there `super` is the crate root); test modules and
comment lines are left out. It prints each crate's module edges and every circle, and exits 1
when there is one. Crates themselves cannot form a circle: cargo refuses that.

Usage: scripts/module-cycles.py [-q]   (-q prints circles only)
"""
import collections
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'runtime')


def code_of(path):
    text = open(path, encoding='utf-8').read()
    text = re.split(r'#\[cfg\(test\)\]\s*mod tests', text)[0]
    return '\n'.join(line for line in text.split('\n') if not line.lstrip().startswith('//'))


def named(text, prefix, mods):
    found = set(re.findall(prefix + r'::([a-z_]+)', text))
    for group in re.findall(prefix + r'::\{([^}]*)\}', text):
        found |= set(re.findall(r'\b([a-z_]+)\b', group))
    return found & mods


def root_uses(src, mods):
    """Names the crate root takes in from its modules (`use m::{a, b}` / `pub use m::a`): a
    module that reaches `crate::a` or `super::a` reaches `m`."""
    through = {}
    for root in ('lib.rs', 'main.rs'):
        path = os.path.join(src, root)
        if not os.path.exists(path):
            continue
        for module, names in re.findall(r'^(?:pub(?:\([a-z]+\))? )?use ([a-z_]+)::(\{[^}]*\}|[A-Za-z_]+);', code_of(path), re.M):
            if module in mods:
                for name in re.findall(r'\b([A-Za-z_][A-Za-z_0-9]*)\b', names):
                    through[name] = module
    return through


def named_items(text, prefix, through):
    found = set(re.findall(prefix + r'::([A-Za-z_][A-Za-z_0-9]*)', text))
    for group in re.findall(prefix + r'::\{([^}]*)\}', text):
        found |= set(re.findall(r'\b([A-Za-z_][A-Za-z_0-9]*)\b', group))
    return {through[name] for name in found if name in through}


def edges_of(src):
    mods = {}
    for entry in os.listdir(src):
        name = entry[:-3] if entry.endswith('.rs') else entry
        if name not in ('lib', 'main'):
            mods[name] = os.path.join(src, entry)
    through = root_uses(src, mods)
    edges = collections.defaultdict(set)
    for module, path in mods.items():
        if os.path.isdir(path):
            files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith('.rs')]
        else:
            files = [path]
        for f in files:
            code = code_of(f)
            targets = named(code, r'crate', set(mods)) | named_items(code, r'crate', through)
            # `super::` of a top-level file (or of a folder module's mod.rs) is the crate root.
            if os.path.dirname(f) == src or os.path.basename(f) == 'mod.rs' and os.path.dirname(os.path.dirname(f)) == src:
                targets |= named(code, r'\bsuper', set(mods)) | named_items(code, r'\bsuper', through)
            edges[module] |= targets - {module}
    return sorted(mods), edges


def circles(nodes, edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in nodes:
        if v not in index:
            visit(v)
    return out


def main():
    quiet = '-q' in sys.argv[1:]
    crates = [os.path.join(ROOT, 'src')] + sorted(
        os.path.join(ROOT, d, 'src') for d in os.listdir(ROOT) if os.path.isdir(os.path.join(ROOT, d, 'src')))
    found = False
    for src in crates:
        nodes, edges = edges_of(src)
        name = os.path.relpath(os.path.dirname(src), os.path.join(ROOT, '..'))
        for component in circles(nodes, edges):
            found = True
            print(f'{name}: circle of {len(component)} modules: {", ".join(component)}')
        if not quiet:
            print(f'{name}:')
            for module in nodes:
                print(f'  {module} -> {", ".join(sorted(edges[module]))}')
    print('module circles: found' if found else 'module circles: none')
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main())
