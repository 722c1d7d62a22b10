#!/usr/bin/env python3
"""Import cycles between the modules of each crate: Cargo already refuses a cycle between crates,
so this looks inside them. An edge A -> B is a `crate::B` path (or `use crate::{B, ...}`) in a file
of top-level module A. Prints every cycle and exits 1 when there is one; prints the module graph
with --graph."""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def crates():
    """The workspace's crates with their source roots, from `cargo metadata`."""
    import json
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"], cwd=ROOT))
    for package in meta["packages"]:
        for target in package["targets"]:
            if "lib" in target["kind"]:
                yield package["name"], pathlib.Path(target["src_path"]).parent


def graph(src: pathlib.Path):
    modules = {p.stem for p in src.glob("*.rs") if p.stem not in ("lib", "main")}
    modules |= {p.name for p in src.iterdir() if p.is_dir()}
    edges = {m: set() for m in modules}
    for module in modules:
        files = [src / f"{module}.rs"] + list((src / module).rglob("*.rs"))
        for file in filter(pathlib.Path.exists, files):
            text = re.sub(r"//.*", "", file.read_text())
            names = set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", text))
            for group in re.findall(r"\bcrate::\{([^}]*)\}", text):
                names |= set(re.findall(r"\b([a-z_][a-z0-9_]*)\b", group))
            edges[module] |= {name for name in names if name in modules and name != module}
    return edges


def cycles(edges):
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def main():
    show = "--graph" in sys.argv
    bad = 0
    for name, src in sorted(crates()):
        edges = graph(src)
        if show:
            for module in sorted(edges):
                print(f"{name}::{module} -> {', '.join(sorted(edges[module])) or '-'}")
        for cycle in cycles(edges):
            bad += 1
            print(f"cycle in {name}: {' -> '.join(cycle)}")
    if bad:
        sys.exit(1)
    print("no import cycles between the modules of any crate")


if __name__ == "__main__":
    main()
