// DeepDream Video: the "preset" widget of DeepDream Image, Video and Zoom Animation (and their legacy nodes).
//
// Choosing a preset writes its values into the widgets it controls (octaves, learning rate, step, ...),
// on the dream node and on the DeepDream Settings node connected to its "settings" input, so the nodes
// show what will run. Changing one of those widgets by hand (on either node) switches the preset to
// "custom": the widgets then run exactly as shown. The server applies a named preset too (for
// workflows queued through the API), so the graph runs the same with or without this extension.
// A Settings node is followed through a direct link only (not through reroutes).
//
// Preset values come from GET /api/deepdream_video/presets (registered by nodes/comfy_adapter.py).

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODES = new Set(["DDVDreamImageV2", "DDVVideoDreamV2", "DDVAnimateV2", "DDVDreamImage", "DDVVideoDream",
  "DDVAnimate"]);
const SETTINGS_NODE = "DDVSettings";
const PRESET = "preset";
const INPUT = 1; // LiteGraph.INPUT: onConnectionsChange's slot type of an input

let presets = null; // Promise<{custom: string, fields: string[], presets: {name: {description, values}}} | null>

function fetchPresets() {
  presets ??= api
    .fetchApi("/deepdream_video/presets")
    .then((r) => (r.ok ? r.json() : null))
    .catch(() => null)
    .then((info) => {
      if (!info) presets = null; // retry next time
      return info;
    });
  return presets;
}

function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

function chain(object, method, after) {
  const original = object[method];
  object[method] = function (...args) {
    const result = original?.apply(this, args);
    after.apply(this, args);
    return result;
  };
}

// The DeepDream Settings node directly connected to a dream node's "settings" input, or null.
function settingsNode(node) {
  const slot = node.findInputSlot?.("settings") ?? -1;
  const source = slot >= 0 ? node.getInputNode?.(slot) : null;
  return source?.type === SETTINGS_NODE ? source : null;
}

// The dream nodes a Settings node's output feeds directly.
function dreamNodes(settings) {
  return (settings.getOutputNodes?.(0) ?? []).filter((n) => NODES.has(n.type));
}

function fill(node, values) {
  node.__ddvApplyingPreset = true;
  try {
    for (const [field, value] of Object.entries(values)) {
      const w = widget(node, field);
      if (w && w.value !== value) {
        w.value = value;
        w.callback?.(value);
      }
    }
  } finally {
    node.__ddvApplyingPreset = false;
  }
  node.setDirtyCanvas?.(true, true);
}

async function applyPreset(node, name) {
  const info = await fetchPresets();
  const preset = info?.presets?.[name];
  if (!preset) return; // "custom", or the server is unreachable: leave the widgets alone
  fill(node, preset.values);
  const settings = settingsNode(node);
  if (settings) fill(settings, preset.values);
}

function switchToCustom(node, info) {
  const preset = widget(node, PRESET);
  if (preset && !node.__ddvApplyingPreset && preset.value !== info.custom) {
    preset.value = info.custom;
    node.setDirtyCanvas?.(true, true);
  }
}

// A look widget changed by hand on a dream node, or on the Settings node feeding dream nodes: "custom".
async function watchFields(node) {
  const info = await fetchPresets();
  if (!info) return;
  const isSettings = node.type === SETTINGS_NODE;
  if (!isSettings && !widget(node, PRESET)) return;
  for (const field of info.fields) {
    const w = widget(node, field);
    if (!w) continue;
    chain(w, "callback", () => {
      if (node.__ddvApplyingPreset) return;
      for (const target of isSettings ? dreamNodes(node) : [node]) switchToCustom(target, info);
    });
  }
}

app.registerExtension({
  name: "deepdream_video.presets",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name === SETTINGS_NODE) {
      chain(nodeType.prototype, "onNodeCreated", function () {
        watchFields(this);
      });
      return;
    }
    if (!NODES.has(nodeData.name)) return;
    chain(nodeType.prototype, "onNodeCreated", function () {
      const preset = widget(this, PRESET);
      if (!preset) return;
      chain(preset, "callback", (value) => applyPreset(this, value));
      watchFields(this);
    });
    // A Settings node connected to a dream node with a named preset shows the preset's look at once.
    chain(nodeType.prototype, "onConnectionsChange", function (type, index, connected) {
      const preset = widget(this, PRESET);
      if (type === INPUT && connected && this.inputs?.[index]?.name === "settings" && preset) {
        applyPreset(this, preset.value);
      }
    });
  },
});
