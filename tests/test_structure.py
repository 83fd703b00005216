"""The shape of the house: no import circles in dream_core, no arrow from a lower package up to a higher one,
no file over 450 lines, and the pipeline assembled in one place.

The import graph is read from the source with :mod:`ast` (every ``import`` statement, also inside functions and
``TYPE_CHECKING`` blocks: an arrow is an arrow), so the test sees what a reader sees.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "dream_core"

#: dream_core's packages from the bottom up. A unit may import units of its own level or below; the
#: top-level modules of dream_core (errors, settings, dream, objectives, ...) are the ground floor.
LEVELS: list[set[str]] = [
    {"<modules>", "fastpath", "models", "flow"},
    {"clip", "video"},
    {"animation"},
    {"pipeline"},
    {"distributed"},
    {"cli"},
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The dream_core modules that ``path`` imports (absolute names)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dream_core"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("dream_core"):
                continue
            for alias in node.names:  # ``from .pkg import module`` imports the module
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
    found.discard(name)
    return found


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(CORE.rglob("*.py"))}


def _unit(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "<package>"
    if (CORE / parts[1]).is_dir():
        return parts[1]
    return "<modules>"


def _level(unit: str) -> int:
    for i, units in enumerate(LEVELS):
        if unit in units:
            return i
    raise AssertionError(f"dream_core/{unit} is in no level of tests/test_structure.py: place it in LEVELS")


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle as a list of modules, or [] (iterative depth-first search)."""
    colour: dict[str, int] = {}
    for start in graph:
        if colour.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                colour[node] = 2
            elif colour.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not colour.get(child) and child in graph:
                colour[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return []


def test_the_import_graph_is_read_from_the_source():
    graph = _graph()
    assert "dream_core.clip.loop" in graph["dream_core.clip.frame_dreamer"] or \
        "dream_core.clip.frame_dreamer" in graph["dream_core.clip.loop"]
    assert "dream_core.video.probe" in graph["dream_core.video.reader"]
    assert "dream_core.errors" in graph["dream_core.dream"]


def test_no_import_circle_in_dream_core():
    graph = _graph()
    # the package's own __init__ files re-export their modules: they are entrances, not parts of a circle
    inner = {m: {t for t in ts if not (CORE / "/".join(t.split(".")[1:]) / "__init__.py").is_file()}
             for m, ts in graph.items()}
    assert _cycle(inner) == []


def test_the_circle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_no_arrow_from_a_lower_package_up_to_a_higher_one():
    upward = []
    for module, targets in _graph().items():
        source = _unit(module)
        if source == "<package>":
            continue
        for target in targets:
            unit = _unit(target)
            if unit != "<package>" and unit != source and _level(unit) > _level(source):
                upward.append(f"{module} -> {target}")
            if unit == "<package>" and source != "<package>":
                upward.append(f"{module} -> {target} (the package's entrance, from inside it)")
    assert upward == []


@pytest.mark.parametrize("a, b", [("clip", "video"), ("video", "clip")])
def test_the_clip_wing_and_the_file_wing_do_not_know_each_other(a, b):
    crossing = [f"{m} -> {t}" for m, ts in _graph().items() if _unit(m) == a for t in ts if _unit(t) == b]
    assert crossing == []


def test_no_file_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in [*CORE.rglob("*.py"), *(ROOT / "nodes").rglob("*.py")]
            if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}


#: Where a VideoWriter is made, a file read and the frame loop driven: the pipeline's own modules, the modules that
#: define them (and their docstring examples), and the mask reader (a mask video is read beside the clip, by index).
_ASSEMBLY = {"VideoWriter(": {"dream_core/pipeline/files.py", "dream_core/video/writer.py"},
             "read_frames(": {"dream_core/pipeline/sources.py", "dream_core/video/reader.py",
                              "dream_core/video/writer.py", "dream_core/animation/masks.py"},
             "dream_clip(": {"dream_core/pipeline/render.py", "dream_core/clip/loop.py",
                             "dream_core/clip/frame_dreamer.py"}}


@pytest.mark.parametrize("call", sorted(_ASSEMBLY))
def test_the_pipeline_is_assembled_in_one_place(call):
    """The CLI, the Ray worker and the nodes run dream_core.pipeline.render_range; none builds its own reader ->
    loop -> writer."""
    found = {str(p.relative_to(ROOT)) for p in [*CORE.rglob("*.py"), *(ROOT / "nodes").rglob("*.py")]
             if call in p.read_text()}
    assert found <= _ASSEMBLY[call], sorted(found - _ASSEMBLY[call])
