"""example_workflows/*.json against our node registry and the core nodes they use (no ComfyUI needed).

The workflows are in the UI format the frontend saves (``nodes``, ``links``,
``widgets_values`` in widget order). Core nodes are described by the inputs and
outputs ComfyUI 0.3.64 reports in ``/object_info``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pack_loader import ROOT, load_pack

pack = load_pack()
OURS = pack.NODE_CLASS_MAPPINGS
WORKFLOWS = sorted((ROOT / "example_workflows").glob("*.json"))
#: The example workflows as they were saved before the DeepDream Settings node (issue 19): they must still load.
OLD_WORKFLOWS = sorted((ROOT / "tests" / "workflows_before_settings").glob("*.json"))
LINK_TYPES = ("IMAGE", "MASK", "VIDEO", "AUDIO", "DEEPDREAM_MODEL", "DEEPDREAM_OBJECTIVE", "DEEPDREAM_FLOW",
              "DEEPDREAM_SCHEDULE", "DEEPDREAM_SETTINGS")

_SCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
#: Core nodes our workflows may use: widget inputs in order, linkable inputs, outputs (ComfyUI 0.3.64).
CORE = {
    "LoadImage": {"widgets": [("image", "file"), ("upload", "upload")], "inputs": {}, "outputs": ["IMAGE", "MASK"]},
    "LoadVideo": {"widgets": [("file", "file"), ("upload", "upload")], "inputs": {}, "outputs": ["VIDEO"]},
    "GetVideoComponents": {"widgets": [], "inputs": {"video": "VIDEO"}, "outputs": ["IMAGE", "AUDIO", "FLOAT"]},
    "CreateVideo": {"widgets": [("fps", ("FLOAT", 1.0, 120.0))],
                    "inputs": {"images": "IMAGE", "audio": "AUDIO", "fps": "FLOAT"}, "outputs": ["VIDEO"]},
    "SaveVideo": {"widgets": [("filename_prefix", "STRING"), ("format", ["auto", "mp4"]), ("codec", ["auto", "h264"])],
                  "inputs": {"video": "VIDEO"}, "outputs": []},
    "SaveImage": {"widgets": [("filename_prefix", "STRING")], "inputs": {"images": "IMAGE"}, "outputs": []},
    "PreviewImage": {"widgets": [], "inputs": {"images": "IMAGE"}, "outputs": []},
    "ImageScale": {"widgets": [("upscale_method", _SCALE_METHODS), ("width", ("INT", 0, 16384)),
                               ("height", ("INT", 0, 16384)), ("crop", ["disabled", "center"])],
                   "inputs": {"image": "IMAGE"}, "outputs": ["IMAGE"]},
    "ImageScaleBy": {"widgets": [("upscale_method", _SCALE_METHODS), ("scale_by", ("FLOAT", 0.01, 8.0))],
                     "inputs": {"image": "IMAGE"}, "outputs": ["IMAGE"]},
    "SolidMask": {"widgets": [("value", ("FLOAT", 0.0, 1.0)), ("width", ("INT", 1, 16384)), ("height", ("INT", 1, 16384))],
                  "inputs": {}, "outputs": ["MASK"]},
    "MaskComposite": {"widgets": [("x", ("INT", 0, 16384)), ("y", ("INT", 0, 16384)),
                                  ("operation", ["multiply", "add", "subtract", "and", "or", "xor"])],
                      "inputs": {"destination": "MASK", "source": "MASK"}, "outputs": ["MASK"]},
    "FeatherMask": {"widgets": [("left", ("INT", 0, 16384)), ("top", ("INT", 0, 16384)), ("right", ("INT", 0, 16384)),
                                ("bottom", ("INT", 0, 16384))], "inputs": {"mask": "MASK"}, "outputs": ["MASK"]},
    "Note": {"widgets": [("text", "STRING")], "inputs": {}, "outputs": []},
    "MarkdownNote": {"widgets": [("text", "STRING")], "inputs": {}, "outputs": []},
}


def our_widgets(node_id: str) -> list[tuple[str, object]]:
    """Widget inputs of our node in the frontend's order: ``(name, spec)`` with spec a combo list or (TYPE, opts)."""
    spec = OURS[node_id].INPUT_TYPES()
    out = []
    for section in ("required", "optional"):
        for name, (kind, *rest) in spec.get(section, {}).items():
            if isinstance(kind, list):
                out.append((name, kind))
            elif kind in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                out.append((name, (kind, rest[0] if rest else {})))
    return out


def our_inputs(node_id: str) -> dict[str, str]:
    spec = OURS[node_id].INPUT_TYPES()
    return {name: entry[0] for section in ("required", "optional") for name, entry in spec.get(section, {}).items()
            if isinstance(entry[0], str)}


def check_value(where: str, spec: object, value: object) -> None:
    if isinstance(spec, list):
        assert value in spec, f"{where}: {value!r} is not one of {spec[:8]}..."
    elif spec in ("STRING",):
        assert isinstance(value, str), where
    elif spec == "file":
        assert isinstance(value, str) and Path(value).suffix.lower() in (".jpg", ".jpeg", ".png", ".mp4"), where
    elif spec == "upload":
        assert value in ("image", None), where
    elif isinstance(spec, tuple) and spec[0] in ("INT", "FLOAT") and isinstance(spec[1], (int, float)):
        kind, lo, hi = spec
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        if kind == "INT":
            assert float(value).is_integer(), f"{where}: {value} is not an integer"
        assert lo <= value <= hi, f"{where}: {value} outside {lo}..{hi}"
    else:
        kind, opts = spec  # type: ignore[misc]
        if kind == "BOOLEAN":
            assert isinstance(value, bool), where
        elif kind == "STRING":
            assert isinstance(value, str), where
        else:
            assert isinstance(value, (int, float)) and not isinstance(value, bool), where
            if kind == "INT":
                assert float(value).is_integer(), f"{where}: {value} is not an integer"
            assert opts.get("min", -float("inf")) <= value <= opts.get("max", float("inf")), (
                f"{where}: {value} outside {opts.get('min')}..{opts.get('max')}")


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_there_are_image_video_and_chained_workflows():
    names = {p.stem for p in WORKFLOWS}
    assert {"deepdream_image", "deepdream_video", "deepdream_chained_layers", "deepdream_scheduled_video",
            "deepdream_zoom_animation", "deepdream_masked_image", "deepdream_video_cadence"} <= names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_has_thumbnail(path):
    thumb = path.with_suffix(".jpg")
    assert thumb.is_file() and thumb.read_bytes()[:3] == b"\xff\xd8\xff", f"{thumb.name} missing or not a JPEG"


@pytest.mark.parametrize("path", WORKFLOWS + OLD_WORKFLOWS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_node_types_exist_and_widget_values_are_valid(path):
    wf = load(path)
    assert wf["nodes"] and "links" in wf
    assert any(n["type"] in OURS for n in wf["nodes"])
    for node in wf["nodes"]:
        kind = node["type"]
        assert kind in OURS or kind in CORE, f"{path.name}: unknown node type {kind}"
        widgets = our_widgets(kind) if kind in OURS else CORE[kind]["widgets"]
        values = node.get("widgets_values") or []
        if path in OLD_WORKFLOWS and kind in OURS and len(values) < len(widgets):
            # a file saved before optional widgets were added at the end: the frontend gives those their defaults
            optional = set(OURS[kind].INPUT_TYPES().get("optional", {}))
            missing = [name for name, _ in widgets[len(values):]]
            assert set(missing) <= optional, f"{path.name} node {node['id']} {kind}: required widgets {missing} unsaved"
        else:
            assert len(values) == len(widgets), f"{path.name} node {node['id']} {kind}: {len(values)} values for {widgets}"
        for (name, spec), value in zip(widgets, values):
            check_value(f"{path.name} node {node['id']} {kind}.{name}", spec, value)
        if kind in OURS:
            validate = getattr(OURS[kind], "VALIDATE_INPUTS", None)
            if validate is not None:
                named = dict(zip((w[0] for w in widgets), values))
                args = {k: named.get(k) for k in validate.__code__.co_varnames[1:validate.__code__.co_argcount]}
                assert validate(**args) is True, f"{path.name} node {node['id']}: {validate(**args)}"


@pytest.mark.parametrize("path", WORKFLOWS + OLD_WORKFLOWS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_links_connect_matching_types_and_required_inputs_are_linked(path):
    wf = load(path)
    nodes = {n["id"]: n for n in wf["nodes"]}

    def outputs(node):
        return list(OURS[node["type"]].RETURN_TYPES) if node["type"] in OURS else CORE[node["type"]]["outputs"]

    def input_type(node, name):
        return our_inputs(node["type"])[name] if node["type"] in OURS else CORE[node["type"]]["inputs"][name]

    for link_id, src, src_slot, dst, dst_slot, kind in wf["links"]:
        s, d = nodes[src], nodes[dst]
        name = d["inputs"][dst_slot]["name"]
        assert d["inputs"][dst_slot]["link"] == link_id
        assert outputs(s)[src_slot] == kind == input_type(d, name), f"{path.name}: link {link_id} {kind}"
    for node in wf["nodes"]:
        if node["type"] not in OURS:
            continue
        required = OURS[node["type"]].INPUT_TYPES()["required"]
        linked = {i["name"] for i in node.get("inputs", []) if i.get("link") is not None}
        for name, entry in required.items():
            if isinstance(entry[0], str) and entry[0] in LINK_TYPES:
                assert name in linked, f"{path.name}: {node['type']}.{name} is not connected"


def _source(wf: dict, node: dict, input_name: str) -> tuple[dict, int]:
    nodes = {n["id"]: n for n in wf["nodes"]}
    link_id = next(i["link"] for i in node["inputs"] if i["name"] == input_name)
    link = next(link for link in wf["links"] if link[0] == link_id)
    return nodes[link[1]], link[2]


def test_video_workflow_keeps_audio_and_fps_and_uses_flow():
    wf = load(ROOT / "example_workflows" / "deepdream_video.json")
    by_type = {}
    for n in wf["nodes"]:
        by_type.setdefault(n["type"], []).append(n)
    create = by_type["CreateVideo"][0]
    for name, slot in (("audio", 1), ("fps", 2)):
        src, src_slot = _source(wf, create, name)
        assert src["type"] == "GetVideoComponents" and src_slot == slot, f"CreateVideo.{name} must come from GetVideoComponents"
    src, _ = _source(wf, create, "images")
    assert src["type"] == "DDVVideoDreamV2"
    dream = src
    flow_node, _ = _source(wf, dream, "flow")
    assert flow_node["type"] == "DDVOpticalFlow"
    assert _source(wf, flow_node, "images") == _source(wf, dream, "images"), "flow and dream must see the same frames"
    assert by_type["SaveVideo"] and by_type["LoadVideo"][0]["widgets_values"][0] == "balcony_view.mp4"
    scale = by_type.get("ImageScale", []) + by_type.get("ImageScaleBy", [])
    assert scale, "the CPU example downscales the frames"


def test_chained_workflow_chains_layers_with_channels():
    wf = load(ROOT / "example_workflows" / "deepdream_chained_layers.json")
    layers = [n for n in wf["nodes"] if n["type"] == "DDVLayerSelect"]
    chained = [n for n in layers if any(i["name"] == "objective" and i.get("link") is not None for i in n["inputs"])]
    assert chained and _source(wf, chained[0], "objective")[0]["type"] == "DDVLayerSelect"
    assert any(n["widgets_values"][1] for n in layers), "one layer picks channels"


def test_streaming_workflow_goes_file_to_file_without_an_image_batch():
    wf = load(ROOT / "example_workflows" / "deepdream_video_streaming.json")
    by_type = {}
    for n in wf["nodes"]:
        by_type.setdefault(n["type"], []).append(n)
    stream = by_type["DDVVideoStream"][0]
    assert _source(wf, stream, "video")[0]["type"] == "LoadVideo"
    save = by_type["SaveVideo"][0]
    assert _source(wf, save, "video")[0] is stream
    assert not {"GetVideoComponents", "CreateVideo", "DDVVideoDream", "DDVVideoDreamV2"} & set(by_type), "no IMAGE batch of the clip"
    assert by_type["LoadVideo"][0]["widgets_values"][0] == "balcony_view.mp4"


def test_examples_use_the_current_nodes_and_one_shows_the_settings_node():
    used = {n["type"] for path in WORKFLOWS for n in load(path)["nodes"]}
    deprecated = {kind for kind in used if getattr(OURS.get(kind), "DEPRECATED", False)}
    assert not deprecated, f"examples use deprecated nodes: {deprecated}"
    assert {"DDVDreamImageV2", "DDVVideoDreamV2", "DDVAnimateV2", "DDVSettings"} <= used
