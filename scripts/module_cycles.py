#!/usr/bin/env python3
"""Fails when the modules of src/ import each other in a cycle.

A module is a file under src/ (`foo.rs` or `foo/mod.rs` is module `foo`). Module A uses
module B when A's code names an item through a path that resolves into B: `crate::b::x`,
`super::x`, `self::b`, a child module's name (`b::x`, `use b::{..}`), or, from the binary
(`main.rs`, `cli/`), `preflightd::b::x`. A path resolves to the longest known module prefix
(an item of `cors/mod.rs` counts as `cors`). Inline `#[cfg(test)] mod tests` blocks are left
out: a module's unit tests may use what they like. Prints every cycle (strongly connected
component) and exits 1 when there is one.

    python3 scripts/module_cycles.py [SRC_DIR]
"""
import re
import sys
from pathlib import Path


def module_path(src: Path, file: Path, crate: str):
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts in (["lib"], ["main"]):
        parts = []
    return (crate,) + tuple(parts)


def strip_tests(text: str) -> str:
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    m = re.search(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{", text)
    if not m:
        return text
    # Drop the braced block that follows.
    depth, i = 0, m.end() - 1
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return strip_tests(text[: m.start()] + text[i + 1 :])
        i += 1
    return text[: m.start()]


def use_paths(tree: str, prefix=()):
    """Expands a use tree (`a::{b, c::{d, self}}`) into paths (lists of segments)."""
    tree = tree.strip()
    depth, split = 0, []
    start = 0
    for i, c in enumerate(tree):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            split.append(tree[start:i])
            start = i + 1
    split.append(tree[start:])
    if len(split) > 1:
        for part in split:
            yield from use_paths(part, prefix)
        return
    if not tree:
        return
    if "{" in tree:
        head, _, rest = tree.partition("{")
        head_parts = [p for p in head.strip().rstrip(":").split("::") if p]
        yield from use_paths(rest.rstrip().rstrip("}"), prefix + tuple(head_parts))
        return
    tree = re.sub(r"\s+as\s+\w+$", "", tree)
    parts = [p.strip() for p in tree.split("::") if p.strip()]
    if parts == ["self"]:
        parts = []
    yield list(prefix) + parts


def main() -> int:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    files = sorted(src.rglob("*.rs"))
    bin_roots = {src / "main.rs"}
    bin_dirs = set()
    # Modules declared by main.rs belong to the binary crate.
    main = src / "main.rs"
    if main.exists():
        for name in re.findall(r"^\s*(?:pub\s+)?mod\s+(\w+)\s*;", strip_tests(main.read_text()), re.M):
            bin_dirs.add(name)
    modules = {}
    for f in files:
        top = f.relative_to(src).parts[0].removesuffix(".rs")
        crate = "bin" if f in bin_roots or top in bin_dirs else "lib"
        modules[module_path(src, f, crate)] = f
    known = set(modules)

    def resolve(current, segments):
        crate = current[0]
        if not segments:
            return None
        head = segments[0]
        if head == "crate":
            base, rest = (crate,), segments[1:]
        elif head == "preflightd":
            base, rest = ("lib",), segments[1:]
        elif head in ("self", "super"):
            base = current
            rest = list(segments)
            while rest and rest[0] in ("self", "super"):
                if rest[0] == "super":
                    base = base[:-1]
                rest = rest[1:]
        elif current + (head,) in known:
            base, rest = current, segments
        else:
            return None  # another crate, or a local item
        target = base
        for seg in rest:
            if target + (seg,) in known:
                target = target + (seg,)
            else:
                break
        return target

    edges = {m: set() for m in modules}
    for mod, f in modules.items():
        text = strip_tests(f.read_text())
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            paths.extend(use_paths(m.group(1)))
        body = re.sub(r"\buse\s+[^;]+;", "", text)
        for m in re.finditer(r"\b((?:crate|super|self|preflightd|[a-z_][a-z0-9_]*)(?:::[A-Za-z_][A-Za-z0-9_]*)+)", body):
            paths.append(m.group(1).split("::"))
        for p in paths:
            target = resolve(mod, p)
            if target is not None and target != mod and target in known:
                edges[mod].add(target)

    # Tarjan's strongly connected components.
    index, low, on, stack, sccs = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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
            sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            visit(v)

    def name(m):
        return "::".join(("crate",) + m[1:]) if m[0] == "lib" else "bin::" + "::".join(m[1:])

    cycles = [sorted(c) for c in sccs if len(c) > 1]
    if "-v" in sys.argv or "--graph" in sys.argv:
        for m in sorted(edges):
            print(f"{name(m)} -> {', '.join(name(t) for t in sorted(edges[m])) or '(nothing)'}")
    for comp in cycles:
        print("import cycle among: " + ", ".join(name(m) for m in comp))
        for m in comp:
            inside = sorted(t for t in edges[m] if t in comp)
            print(f"  {name(m)} uses {', '.join(name(t) for t in inside)}")
    if cycles:
        return 1
    print(f"no import cycle among {len(modules)} modules of {src}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
