// DeepDream Video: the "preset" widget of DeepDream Image and DeepDream Video.
//
// Choosing a preset writes its values into the widgets it controls (octaves, learning rate, step, ...),
// so the node shows what will run. Changing one of those widgets by hand switches the preset to
// "custom": the widgets then run exactly as shown. The server applies a named preset too (for
// workflows queued through the API), so the graph runs the same with or without this extension.
//
// Preset values come from GET /api/deepdream_video/presets (registered by nodes/comfy_adapter.py).

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODES = new Set(["DDVDreamImage", "DDVVideoDream"]);
const PRESET = "preset";

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

async function applyPreset(node, name) {
  const info = await fetchPresets();
  const preset = info?.presets?.[name];
  if (!preset) return; // "custom", or the server is unreachable: leave the widgets alone
  node.__ddvApplyingPreset = true;
  try {
    for (const [field, value] of Object.entries(preset.values)) {
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

async function watchFields(node) {
  const info = await fetchPresets();
  const preset = widget(node, PRESET);
  if (!info || !preset) return;
  for (const field of info.fields) {
    const w = widget(node, field);
    if (!w) continue;
    chain(w, "callback", () => {
      if (!node.__ddvApplyingPreset && preset.value !== info.custom) {
        preset.value = info.custom;
        node.setDirtyCanvas?.(true, true);
      }
    });
  }
}

app.registerExtension({
  name: "deepdream_video.presets",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODES.has(nodeData.name)) return;
    chain(nodeType.prototype, "onNodeCreated", function () {
      const preset = widget(this, PRESET);
      if (!preset) return;
      chain(preset, "callback", (value) => applyPreset(this, value));
      watchFields(this);
    });
  },
});
