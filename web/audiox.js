// AudioX for ComfyUI: show the text reports of AudioX nodes (detected model, MAF gates, sampler
// summary) in a read-only box on the node after it runs.  Only AudioX node types are touched
// (category "audio/AudioX..."); their own onExecuted handler, if any, still runs first.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const REPORT = "audiox_report";

app.registerExtension({
  name: "audiox.reports",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!String(nodeData?.category ?? "").startsWith("audio/AudioX")) return;
    const previous = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      previous?.apply(this, arguments);
      const text = message?.text;
      if (!text || (Array.isArray(text) && text.length === 0)) return;
      let widget = this.widgets?.find((w) => w.name === REPORT);
      if (!widget) {
        widget = ComfyWidgets.STRING(this, REPORT, ["STRING", { multiline: true }], app).widget;
        widget.serialize = false;
        if (widget.options) widget.options.serialize = false;
        if (widget.inputEl) {
          widget.inputEl.readOnly = true;
          widget.inputEl.style.opacity = 0.75;
        }
      }
      widget.value = Array.isArray(text) ? text.join("\n") : String(text);
      this.setSize?.(this.computeSize?.() ?? this.size);
      app.graph?.setDirtyCanvas?.(true, false);
    };
  },
});
