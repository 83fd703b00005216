"""Workflows saved before the slim dream nodes (issue 19) still load in place and dream the same.

ComfyUI's frontend puts a saved node's ``widgets_values`` onto the node's widgets *by position*. The first dream
nodes (``DDVDreamImage``, ``DDVVideoDream``, ``DDVAnimate``) stay registered with their widgets in the saved order
(deprecated: hidden from search), so an old file's values land on the same names. The example workflows moved to
the slim nodes (``...V2``) plus, where the values differ from its defaults, a DeepDream Settings node; for every
dream node of every old example (``tests/workflows_before_settings``, the files as they were) this runs the old
node with its saved values and the new example's nodes with theirs, on the same small inputs, and compares.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pack_loader import ROOT
from test_nodes import M, core, flow_of, image_batch, nodes, panning_clip, tiny  # noqa: F401 (tiny: a fixture)
from test_workflows import our_widgets

OLD = sorted((ROOT / "tests" / "workflows_before_settings").glob("*.json"))
SLIM = {"DDVDreamImage": "DDVDreamImageV2", "DDVVideoDream": "DDVVideoDreamV2", "DDVAnimate": "DDVAnimateV2"}
#: Fewer steps for the runs, on both sides (the old node's widget, the new node's settings input), to keep them fast.
SHORT = {"num_iterations": 2}
#: Links the dream nodes take: the same small input for the old node and the new one.
MASK = torch.linspace(0.0, 1.0, 64).expand(1, 48, 64).contiguous()


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def old_dream_nodes() -> list[tuple[Path, dict]]:
    return [(path, node) for path in OLD for node in load(path)["nodes"] if node["type"] in SLIM]


def named_widgets(node: dict) -> dict:
    """The node's saved widget values by name, mapped by position as the frontend does."""
    names = [name for name, _ in our_widgets(node["type"])]
    assert len(names) == len(node["widgets_values"]), f"{node['type']}: {len(node['widgets_values'])} values"
    return dict(zip(names, node["widgets_values"]))


def settings_input(workflow: dict, node: dict):
    """The DEEPDREAM_SETTINGS dict a node's ``settings`` input receives, built by the source node; ``None``."""
    link_id = next((i["link"] for i in node.get("inputs", []) if i["name"] == "settings"), None)
    if link_id is None:
        return None
    link = next(link for link in workflow["links"] if link[0] == link_id)
    source = next(n for n in workflow["nodes"] if n["id"] == link[1])
    assert source["type"] == "DDVSettings"
    with torch.inference_mode():
        return M["DDVSettings"]().build(**named_widgets(source))[0]


def run(node_id: str, model, widgets: dict, links: dict, settings=None) -> torch.Tensor:
    """Call node ``node_id`` the way ComfyUI does: its widget values and the linked inputs by name."""
    cls = M[node_id]
    extra = {} if settings is None else {"settings": settings}
    with torch.inference_mode():
        return getattr(cls(), cls.FUNCTION)(model=model, **links, **widgets, **extra)[0]


def linked(node: dict) -> set[str]:
    return {i["name"] for i in node.get("inputs", []) if i.get("link") is not None and "widget" not in i}


def inputs_for(node: dict, widgets: dict) -> tuple[dict, dict]:
    """Small stand-ins for the node's links (images, flow, mask), and its widgets with an animation shortened."""
    widgets = dict(widgets)
    if node["type"].startswith("DDVVideoDream"):
        clip = panning_clip(3)
        links = {"images": clip, "flow": flow_of(clip)[0]}
    elif node["type"].startswith("DDVAnimate"):
        links, widgets["frames"] = {"image": image_batch()}, 3
    else:
        links = {"images": image_batch()}
    if "mask" in linked(node):
        links["mask"] = MASK
    return links, widgets


def test_every_old_example_has_its_dream_nodes_checked():
    assert {path.stem for path, _ in old_dream_nodes()} == {p.stem for p in OLD} and len(OLD) == 7
    assert {node["type"] for _, node in old_dream_nodes()} == set(SLIM)


@pytest.mark.parametrize("path, node", old_dream_nodes(), ids=lambda x: x.stem if isinstance(x, Path) else "")
def test_old_values_land_on_the_same_widgets_of_the_kept_node(path, node):
    assert getattr(M[node["type"]], "DEPRECATED", False) is True
    names = [name for name, _ in our_widgets(node["type"])]
    named_widgets(node)  # as many widgets as saved values
    # Files saved by newer frontends list the widgets by name, in the order they were saved.
    saved = [i["name"] for i in node.get("inputs", []) if "widget" in i]
    assert saved == names[: len(saved)]


@pytest.mark.parametrize("path, node", old_dream_nodes(), ids=lambda x: x.stem if isinstance(x, Path) else "")
def test_the_new_example_dreams_what_the_old_one_did(path, node, tiny):
    new_workflow = load(ROOT / "example_workflows" / path.name)
    new = next(n for n in new_workflow["nodes"] if n["id"] == node["id"])
    assert new["type"] == SLIM[node["type"]]
    old_values, new_values = named_widgets(node), named_widgets(new)
    settings = settings_input(new_workflow, new)
    # The same settings: the old node's widgets, and the slim node's merged with its Settings node.
    assert nodes.common.merge_settings(old_values) == nodes.common.merge_settings(new_values, settings)
    assert {k: v for k, v in old_values.items() if k in new_values} == {k: new_values[k] for k in old_values
                                                                        if k in new_values}
    assert linked(node) <= linked(new) | {"schedule"}
    links, widgets = inputs_for(node, {**old_values, **SHORT})
    _, new_widgets = inputs_for(new, new_values)
    before = run(node["type"], tiny, widgets, links)
    after = run(new["type"], tiny, new_widgets, links, {**(settings or {}), **SHORT})
    assert torch.equal(before, after)
    assert (before - (links.get("images", links.get("image"))[: before.shape[0]])).abs().mean() > 1e-3  # it dreamed
