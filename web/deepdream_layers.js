// DeepDream Video: the "layer" dropdown of DeepDream Layers follows the model chosen in the
// DeepDream Model Loader it is connected to, and the "channels" and "count" labels show the valid range.
//
// Layer names and channel counts come from GET /api/deepdream_video/layers?model=NAME
// (registered by nodes/comfy_adapter.py). Without this extension the dropdown lists the
// layers of every model and the server still checks the choice when the graph runs.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const LAYER_NODE = "DDVLayerSelect";
const LOADER_NODE = "DDVModelLoader";
const MAX_HOPS = 32; // reroutes followed upstream

const catalogs = new Map(); // model name -> Promise<{model, default, layers: [{name, channels}]} | null>

function fetchCatalog(model) {
  if (!catalogs.has(model)) {
    const url = `/deepdream_video/layers?model=${encodeURIComponent(model)}`;
    const request = api
      .fetchApi(url)
      .then((r) => (r.ok ? r.json() : null))
      .catch(() => null)
      .then((info) => {
        if (!info) catalogs.delete(model); // retry next time
        return info;
      });
    catalogs.set(model, request);
  }
  return catalogs.get(model);
}

function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

// The model_name chosen on the loader upstream of `node`'s "model" input (through reroutes), or null.
function upstreamModelName(node) {
  let current = node;
  let slot = node.findInputSlot?.("model") ?? -1;
  for (let hop = 0; hop < MAX_HOPS && slot >= 0; hop++) {
    const source = current.getInputNode?.(slot);
    if (!source) return null;
    if (source.type === LOADER_NODE) return widget(source, "model_name")?.value ?? null;
    if (source.inputs?.length !== 1) return null; // not a reroute: give up
    current = source;
    slot = 0;
  }
  return null;
}

function setChannelsLabel(node, info) {
  const channels = widget(node, "channels");
  const layer = widget(node, "layer");
  if (!channels || !layer) return;
  const entry = info?.layers?.find((l) => l.name === layer.value);
  channels.label = entry ? `channels (0-${entry.channels - 1}, empty = all)` : undefined;
  const count = widget(node, "count");
  if (count) count.label = entry ? `count (1-${entry.channels})` : undefined;
}

async function refreshLayerNode(node) {
  const layer = widget(node, "layer");
  if (!layer) return;
  node.__ddvAllLayers ??= [...(layer.options.values ?? [])];
  const model = upstreamModelName(node);
  if (!model) {
    layer.options.values = node.__ddvAllLayers;
    node.__ddvInfo = null;
    setChannelsLabel(node, null);
    node.setDirtyCanvas?.(true, true);
    return;
  }
  const info = await fetchCatalog(model);
  if (!info || upstreamModelName(node) !== model) return; // failed, or the model changed meanwhile
  const names = info.layers.map((l) => l.name);
  layer.options.values = names;
  if (!names.includes(layer.value)) {
    layer.value = info.default;
    layer.callback?.(layer.value);
  }
  node.__ddvInfo = info;
  setChannelsLabel(node, info);
  node.setDirtyCanvas?.(true, true);
}

function refreshAll(graph) {
  for (const node of graph?._nodes ?? []) {
    if (node.type === LAYER_NODE) refreshLayerNode(node);
  }
}

function chain(object, method, after) {
  const original = object[method];
  object[method] = function (...args) {
    const result = original?.apply(this, args);
    after.apply(this, args);
    return result;
  };
}

app.registerExtension({
  name: "deepdream_video.layers",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name === LAYER_NODE) {
      chain(nodeType.prototype, "onNodeCreated", function () {
        const layer = widget(this, "layer");
        if (layer) {
          chain(layer, "callback", () => setChannelsLabel(this, this.__ddvInfo));
        }
        refreshLayerNode(this);
      });
      chain(nodeType.prototype, "onConnectionsChange", function () {
        refreshLayerNode(this);
      });
    } else if (nodeData.name === LOADER_NODE) {
      chain(nodeType.prototype, "onNodeCreated", function () {
        const name = widget(this, "model_name");
        if (name) chain(name, "callback", () => refreshAll(this.graph));
      });
    }
  },

  async afterConfigureGraph() {
    refreshAll(app.graph);
  },
});
