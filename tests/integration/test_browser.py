"""The audio workbench (web/audiox.js) in a real browser against a real ComfyUI.

Skipped unless ``COMFYUI_DIR`` names a ComfyUI checkout (the shared server of
tests/conftest.py), Playwright for Python is importable and a Chromium binary exists
(``$AUDIOX_CHROMIUM``, default Debian's ``/usr/bin/chromium``; Playwright's own browser downloads
are never used).  Through the UI it:

* loads the audio_inpainting graph from the Templates browser; the range editor shows the Load
  Audio file before any run; a typed range is drawn, selected and deleted with the Delete key,
  and a range dragged on the waveform lands in the ``ranges`` widget on the 10 ms grid;
* clicks Run: the saved audio equals the input outside the dragged range and differs inside it,
  and VAE Decode's preview marks that range as regenerated;
* runs the LoRA training graph and sees the live curve update at least twice before the node
  finishes, and its preview generations become playable;
* opens the Templates browser: every card of this pack shows its thumbnail and readable title;
* fails on any console error or uncaught exception that comes from this pack's extension.

``AUDIOX_SCREENSHOT_DIR=<folder>`` also saves PNG screenshots of the range editor, the output
preview and the live training view there (docs/ holds the ones shown in the README); nothing is
written anywhere else.
"""
from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

if not os.environ.get("COMFYUI_DIR"):
    pytest.skip("COMFYUI_DIR is not set (see tests/integration/README.md)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
CHROMIUM = os.environ.get("AUDIOX_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (set AUDIOX_CHROMIUM)", allow_module_level=True)

import torch  # noqa: E402

from audiox_core import media  # noqa: E402
from comfy_server import PACK_NAME, RUN_S, WORKFLOWS  # noqa: E402

SHOTS = os.environ.get("AUDIOX_SCREENSHOT_DIR")
EXTENSION_PATH = f"/extensions/{PACK_NAME}/"


class Console:
    """Console errors and uncaught exceptions that come from this pack's extension."""

    def __init__(self, page):
        self.ours: list[str] = []
        self.all: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", self._pageerror)

    def _console(self, msg):
        if msg.type != "error":
            return
        where = (msg.location or {}).get("url", "")
        text = f"{msg.text} ({where})"
        self.all.append(text)
        if EXTENSION_PATH in where or "[AudioX]" in msg.text:
            self.ours.append(text)

    def _pageerror(self, err):
        stack = getattr(err, "stack", "") or ""
        self.all.append(f"uncaught {err}")
        if EXTENSION_PATH in stack or EXTENSION_PATH in str(err):
            self.ours.append(f"uncaught {err}\n{stack}")

    def check(self):
        assert not self.ours, "console errors from our extension:\n" + "\n".join(self.ours)


@pytest.fixture(scope="module")
def browser_page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            console = Console(page)
            page.goto(server.url)
            page.wait_for_function("() => window.app?.graph && window.comfyAPI && "
                                   "(window.app.extensions || []).some(e => e.name === 'audiox.workbench')",
                                   timeout=120_000)
            yield page, console
        finally:
            browser.close()


# ------------------------------------------------------------------ UI helpers
def open_our_templates(page):
    custom = page.get_by_text("Custom Nodes", exact=True)
    try:  # a fresh user gets the Templates browser on first start, a moment after the app is up
        custom.wait_for(timeout=6_000)
    except sync_api.TimeoutError:
        page.locator("button.templates-tab-button").first.click()
        custom.wait_for(timeout=30_000)
    # the category list entry (once chosen, the pane's heading carries the same text)
    page.get_by_role("option", name=PACK_NAME, exact=True).click()
    page.locator('[data-testid^="template-workflow-"]').first.wait_for(timeout=30_000)


def load_template(page, name: str, node_type: str):
    open_our_templates(page)
    card = page.locator(f'[data-testid="template-workflow-{name}"]')
    cards = page.locator('[data-testid^="template-workflow-"]')
    for _ in range(20):  # the grid renders more cards as it scrolls
        if card.count():
            break
        cards.last.scroll_into_view_if_needed()
        page.mouse.wheel(0, 2000)
        page.wait_for_timeout(500)
    card.scroll_into_view_if_needed()
    card.click()
    page.wait_for_function(f"() => app.graph._nodes.some(n => n.type === '{node_type}')", timeout=30_000)
    page.wait_for_timeout(500)


def node_id(page, node_type: str) -> int:
    return page.evaluate(f"() => app.graph._nodes.find(n => n.type === '{node_type}').id")


def focus(page, nid: int, at=(80, 120)):
    """Scale 1, node ``nid`` at canvas position ``at`` (so its DOM widgets are on screen)."""
    page.evaluate("""([id, x, y]) => { const n = app.graph.getNodeById(id); const ds = app.canvas.ds;
        ds.scale = 1; ds.offset = [x - n.pos[0], y - n.pos[1]]; app.canvas.setDirty(true, true); }""",
                  [nid, at[0], at[1]])
    page.wait_for_timeout(400)


def node_clip(page, nid: int, pad: int = 8, from_widget: str | None = None) -> dict:
    """The node's rectangle on the page (title bar included, or from widget ``from_widget`` down),
    for screenshots."""
    return page.evaluate("""([id, pad, wname]) => { const n = app.graph.getNodeById(id); const ds = app.canvas.ds;
        const r = app.canvas.canvas.getBoundingClientRect();
        const w = wname ? n.widgets.find(w => w.name === wname) : null;
        const top = w ? (w.last_y ?? w.y) - 6 : -30;
        const x = (n.pos[0] + ds.offset[0]) * ds.scale + r.left, y = (n.pos[1] + top + ds.offset[1]) * ds.scale + r.top;
        return {x: x - pad, y: y - pad, width: n.size[0] * ds.scale + 2 * pad,
                height: (n.size[1] - top) * ds.scale + 2 * pad}; }""", [nid, pad, from_widget])


def shoot(page, nid: int, name: str, from_widget: str | None = None):
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        if from_widget:  # bring the node's lower part on screen
            h = page.evaluate("(id) => app.graph.getNodeById(id).size[1]", nid)
            focus(page, nid, at=(80, 860 - h))
        page.screenshot(path=str(Path(SHOTS) / name), clip=node_clip(page, nid, from_widget=from_widget))


def set_widget(page, nid: int, name: str, value):
    page.evaluate("""([id, name, v]) => { const w = app.graph.getNodeById(id).widgets.find(w => w.name === name);
        w.value = v; w.callback?.(v); app.canvas.setDirty(true, true); }""", [nid, name, value])


def widget(page, nid: int, name: str):
    return page.evaluate("([id, name]) => app.graph.getNodeById(id).widgets.find(w => w.name === name).value",
                         [nid, name])


def run_and_wait(page, server, watch_node: int | None = None) -> str:
    """Click Run; wait for the prompt to finish; returns its prompt id.  With ``watch_node``, the
    number of live-curve updates that node had drawn when its 'executed' message came is stored in
    window.__audioxUpdatesAtExecuted."""
    page.evaluate("""(watch) => {
        const api = window.comfyAPI.api.api;
        window.__audioxDone = null; window.__audioxUpdatesAtExecuted = null;
        if (!window.__audioxListening) {
          window.__audioxListening = true;
          api.addEventListener('execution_success', e => { window.__audioxDone = {ok: true, id: e.detail.prompt_id}; });
          api.addEventListener('execution_error', e => { window.__audioxDone = {ok: false, id: e.detail.prompt_id,
                                                                               error: e.detail.exception_message}; });
          api.addEventListener('executed', e => {
            if (String(e.detail.node) === String(window.__audioxWatch)) {
              const el = app.graph.getNodeById(window.__audioxWatch)?.audioxCurve?.element;
              window.__audioxUpdatesAtExecuted = Number(el?.dataset.updates || 0);
            }
          });
        }
        window.__audioxWatch = watch;
    }""", watch_node)
    page.locator('[data-testid="queue-button"]').get_by_role("button", name="Run").first.click()
    page.wait_for_function("() => window.__audioxDone !== null", timeout=RUN_S * 1000)
    done = page.evaluate("() => window.__audioxDone")
    assert done["ok"], f"the graph failed in the browser: {done.get('error')}\n{server.log_tail()}"
    return done["id"]


def saved_audio(server, prompt_id: str, node: int) -> Path:
    outputs = server.get(f"/history/{prompt_id}")[prompt_id]["outputs"]
    item = outputs[str(node)]["audio"][0]
    return server.root / "output" / item.get("subfolder", "") / item["filename"]


# ------------------------------------------------------------------ tests
def test_range_editor_drag_then_inpainting_keeps_the_rest(browser_page, server):
    page, console = browser_page
    load_template(page, "audio_inpainting", "AudioXInpaintMask")
    mask = node_id(page, "AudioXInpaintMask")
    # the tiny test model generates a 0.26 s window of the 2 s input: widen the node for precision
    page.evaluate("(id) => { const n = app.graph.getNodeById(id); n.setSize([1100, n.size[1]]); }", mask)
    focus(page, mask)
    editor = page.locator('[data-audiox-view="inpaint"]')
    canvas = page.locator('[data-audiox-canvas="inpaint"]')
    # before any run: the connected Load Audio file, fetched through /view (2 s test tone)
    page.wait_for_function("() => document.querySelector('[data-audiox-status=\"inpaint\"]')"
                           "?.textContent.startsWith('2.00 s')", timeout=30_000)
    # typing redraws: a typed range is drawn, can be selected and deleted with the Delete key
    set_widget(page, mask, "ranges", "1.50-1.75")
    page.wait_for_function("() => document.querySelector('[data-audiox-canvas=\"inpaint\"]').dataset.ranges"
                           " === '1.5-1.75'")
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.81, box["y"] + box["height"] * 0.5)  # inside 1.5-1.75 s
    page.keyboard.press("Delete")
    assert widget(page, mask, "ranges") == ""
    # drag a new range over 4 % .. 11 % of the 2 s clip (0.08-0.22 s, inside the tiny model's window)
    box = canvas.bounding_box()
    x0, x1 = box["x"] + box["width"] * 0.04, box["x"] + box["width"] * 0.11
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(x0, y)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x0 + (x1 - x0) * i / 10, y)
    page.mouse.up()
    text = widget(page, mask, "ranges")
    m = re.fullmatch(r"(\d+\.\d+)-(\d+\.\d+)", text)
    assert m, f"ranges widget after the drag: {text!r}"
    a, b = float(m.group(1)), float(m.group(2))
    assert abs(a - 0.08) < 0.01 and abs(b - 0.22) < 0.01, (a, b)
    assert all(abs(v * 100 - round(v * 100)) < 1e-6 for v in (a, b)), "not on the 10 ms grid"
    assert "regenerate" in editor.text_content()
    shoot(page, mask, "range_editor.png")

    prompt_id = run_and_wait(page, server)
    out, sr = media.load_audio(str(saved_audio(server, prompt_id, node_id(page, "SaveAudio"))))
    src, src_sr = media.load_audio(str(server.root / "input" / "audiox_example_events.wav"))
    ref = media.resample(src.float().unsqueeze(0), src_sr, sr)[0] if src_sr != sr else src.float()
    n = min(out.shape[-1], ref.shape[-1])
    margin = int(0.02 * sr)  # away from the seams (a latent frame of the tiny model is 8 ms)
    ia, ib = int(a * sr), int(b * sr)
    outside = torch.cat([(out[..., :n] - ref[..., :n])[..., : ia - margin],
                         (out[..., :n] - ref[..., :n])[..., ib + margin:]], -1)
    inside = (out[..., :n] - ref[..., :n])[..., ia + margin: ib - margin]
    assert outside.abs().max() < 2e-3, f"kept audio changed by {outside.abs().max():.4f}"
    assert inside.abs().max() > 0.05, f"the range was not regenerated (max diff {inside.abs().max():.4f})"

    # the output preview marks the regenerated seconds
    dec = node_id(page, "AudioXVAEDecode")
    focus(page, dec)
    page.wait_for_function("() => /inpainting: [0-9.]+-[0-9.]+ regenerated/.test("
                           "document.querySelector('[data-audiox-view=\"preview\"]')?.textContent || '')",
                           timeout=30_000)
    marked = re.search(r"inpainting: ([0-9.]+)-([0-9.]+)", page.locator('[data-audiox-view="preview"]')
                       .first.text_content())
    assert float(marked.group(1)) <= a + 0.01 and float(marked.group(2)) >= b - 0.01, marked.group(0)
    shoot(page, dec, "output_preview.png")
    console.check()


def test_lora_training_curve_updates_live(browser_page, server):
    page, console = browser_page
    load_template(page, "lora_training", "AudioXTrainLoRA")
    tr = node_id(page, "AudioXTrainLoRA")
    steps = 24
    set_widget(page, tr, "steps", steps)
    set_widget(page, tr, "save_every", 8)
    set_widget(page, tr, "resume", False)
    set_widget(page, tr, "preview_every", 12)
    for sampler in page.evaluate("() => app.graph._nodes.filter(n => n.type === 'AudioXSampler').map(n => n.id)"):
        set_widget(page, sampler, "steps", 4)
    focus(page, tr)
    run_and_wait(page, server, watch_node=tr)
    at_end = page.evaluate("() => window.__audioxUpdatesAtExecuted")
    assert at_end is not None and at_end >= 2, f"live curve updates before the node finished: {at_end}"
    view = page.locator('[data-audiox-view="training"]')
    assert view.get_attribute("data-points") == str(steps)
    status = view.text_content()
    assert f"step {steps}/{steps}" in status and "steps/s" in status and "lr " in status, status
    assert "step_00000016.safetensors" in status, status  # the newest checkpoint when the last message went
    # the preview generation of step 24 is playable in the live view
    page.wait_for_function("""() => { const a = document.querySelector('[data-audiox-view="training"] audio');
        return a && a.src.includes('lora_preview_step24') && a.readyState >= 1 && a.duration > 0; }""",
                           timeout=30_000)
    shoot(page, tr, "training_live.png", from_widget="save_every")
    fusion = page.evaluate("() => app.graph._nodes.find(n => n.type === 'AudioXMAFFusion' && n.audioxGates)?.id")
    assert fusion is not None, "no MAF Fusion node shows gate bars"
    gates = json.loads(page.locator('[data-audiox-view="gates"]').first.get_attribute("data-gates"))
    assert len(gates) == 3
    console.check()


def test_templates_browser_cards_have_images_and_titles(browser_page, server):
    page, console = browser_page
    open_our_templates(page)
    names = sorted(p.stem for p in WORKFLOWS)
    cards = page.locator('[data-testid^="template-workflow-"]')
    for _ in range(20):  # the grid renders more cards as it scrolls
        if cards.count() >= len(names):
            break
        cards.last.scroll_into_view_if_needed()
        page.mouse.wheel(0, 2000)
        page.wait_for_timeout(500)
    for n in names:  # the browser loads a card's image when the card scrolls into view
        page.locator(f'[data-testid="template-workflow-{n}"]').scroll_into_view_if_needed()
        page.wait_for_function("""(n) => { const img = document.querySelector(`[data-testid="template-workflow-${n}"] img`);
            return img && img.complete && img.naturalWidth > 0 && img.style.display !== 'none'; }""",
                               arg=n, timeout=15_000)
    for n in names:  # what the cards show is our file (the frontend shows it from a blob: cache)
        with urllib.request.urlopen(f"{server.url}/api/workflow_templates/{PACK_NAME}/{n}.jpg", timeout=30) as r:
            assert r.status == 200 and r.read(3) == b"\xff\xd8\xff", n
    titles = page.evaluate("""(names) => names.map(n =>
        document.querySelector(`[data-testid="template-workflow-${n}"] h3`)?.textContent)""", names)
    assert all(t and t != n for t, n in zip(titles, names)), dict(zip(names, titles))
    assert "Audio Inpainting" in titles
    page.keyboard.press("Escape")
    console.check()
