"""`canvit-eval demo`: look through CanViT's eyes in a browser; you place the glimpses, or a policy does.

One model instance serves every browser session; each session (`gr.State`) holds its own scene, recurrent
state and glimpse history, so sessions never mix. After every glimpse the page shows:
- scene: the scene with every glimpse box so far, numbered (the latest in red);
- glimpse: the pixels the model received;
- canvas: the canvas spatial tokens as RGB through `visualize`'s PCA projection, with one basis per scene
  (fitted on all canvases of a reference rollout, the whole scene then its four quadrants, run when the scene
  is loaded and not counted), so colours are comparable across steps, policies and resets;
- segmentation (with `--ade20k-probe`): the probe's labels over the scene;
- top-5 ImageNet-1k classes (with `--in1k-probe`): the DINOv3 probe fused behind the CLS readout, as in
  `canvit-eval in1k`;
- latency: the glimpse's wall time in ms (extraction + model + probes), and a plot over t of the canvas
  change (mean 1 - cos(canvas_t, canvas_{t-1}) over cells) and, with an IN1k probe, the top-1 probability.

Gradio is an optional extra (`pip install 'canvit-eval[demo]'`); it is imported only when the demo runs.
The page needs no internet (analytics and version checks off, system fonts only).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

EXAMPLE = """examples:
  canvit-eval demo                                   # the flagship CanViT-B (downloaded once), on http://127.0.0.1:7860
  canvit-eval demo --model ckpt/ --in1k-probe in1k-probe/ --ade20k-probe ade-probe/ --device cpu
  canvit-eval demo --random-init canvitb16           # random weights: try the UI anywhere, offline"""

MAX_SIDE = 4096  # uploads with a longer side are downscaled to it first (with a note in the page)
SEG_PX = 256  # resolution of the segmentation's argmax (then enlarged to the panel)
MAX_RUN = 64  # most glimpses one "Run T" takes
SAMPLE_SCENES = {f"sample scene {i + 1}": i for i in range(4)}  # name -> canvit_data.synthetic seed
LOG = logging.getLogger("canvit_eval.demo")


# -- the model side: one instance, no UI -----------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    scene_size: int = 512
    canvas_grid: int = 32
    glimpse_px: int = 128
    amp: bool = True  # bf16 autocast on CUDA (CPU is always fp32)

    @property
    def panel_px(self) -> int:
        """Side of every picture in the page (scenes smaller than 256 px are shown enlarged)."""
        return min(max(self.scene_size, 256), 512)


@dataclass
class Glimpse:
    """One glimpse of a session: where (centre (y, x) in [-1, 1], scale) and how it went."""

    center: tuple[float, float]
    scale: float
    source: str  # "click" or a policy name
    latency_ms: float
    change: float  # mean over cells of 1 - cos(canvas_t, canvas_{t-1})
    top1: float | None = None  # top-1 probability (IN1k probe)


@dataclass
class Session:
    """Everything one browser session has: its scene, recurrent state and glimpse history."""

    name: str  # what the scene is (file name, sample)
    scene: torch.Tensor  # [3, S, S] normalized, on the model's device
    display: np.ndarray  # [P, P, 3] uint8, the scene as shown (P = panel px)
    basis: Any  # visualize.PCABasis of this scene
    state: Any = None  # canvit_model.RecurrentState
    canvas: torch.Tensor | None = None  # [G, G, D_can] float32 CPU, the current canvas
    glimpses: list[Glimpse] = field(default_factory=list)
    glimpse_px: np.ndarray | None = None  # the last glimpse, [g, g, 3] uint8
    seg_logits: torch.Tensor | None = None  # [1, C, G, G] after the last glimpse (ADE20K probe)
    top5: dict[str, float] | None = None
    policy: Any = None  # the policy being stepped, its name and horizon, and how far it went
    policy_key: tuple[str, int, int] | None = None
    policy_t: int = 0


class Engine:
    """The model, its optional probes, and the operations on a `Session` (thread-safe: one lock)."""

    def __init__(self, model: Any, cfg: DemoConfig, *, device: torch.device, seg_probe: Any = None,
                 in1k_head: Any = None, class_names: Sequence[str] | None = None, notes: Sequence[str] = ()) -> None:
        from canvit_model import CanViTForSemanticSegmentation

        self.model = model.eval()
        self.canvit = model.canvit
        self.cfg = cfg
        self.device = device
        self.seg = CanViTForSemanticSegmentation(self.canvit, seg_probe).eval() if seg_probe is not None else None
        self.in1k_head = in1k_head.eval() if in1k_head is not None else None
        n = in1k_head.proj.out_features if in1k_head is not None else 0
        names = list(class_names or [])
        self.class_names = names if len(names) == n else [f"class {i}" for i in range(n)]
        self.notes = list(notes)
        # one lock for the model and for each session's read-modify-write: a click during a run of the same
        # session slips in between two of its glimpses instead of losing one
        self._lock = threading.RLock()

    # scenes

    def new_session(self, image: Any, name: str) -> Session:
        """A session on a PIL RGB image: squished to S x S (the ADE20K protocol), canvas fresh, PCA basis fitted."""
        from canvit_model import Viewpoint, quadtree_viewpoint, square_resize_transform

        from .rollout import glimpse_step
        from .visualize import _panel, fit_pca, to_display

        scene = square_resize_transform(image, self.cfg.scene_size).to(self.device)  # [3, S, S]
        # the colour basis: fitted on every canvas of a reference rollout (the whole scene, then its quadrants),
        # as `visualize` fits on all timesteps; it stays for the scene, so colours are comparable over time
        reference = [Viewpoint.full_scene(batch_size=1)] + [quadtree_viewpoint(1, torch.tensor([i])) for i in range(4)]
        state, canvases = self._init_state(), []
        with self._lock:
            for vp in reference:
                out, _ = glimpse_step(self.canvit, scene[None], state, vp, glimpse_px=self.cfg.glimpse_px,
                                      amp=self.cfg.amp)
                state = out.state
                canvases.append(self._grid(state.canvas))
        basis = fit_pca(torch.stack(canvases))  # [5, G, G, D_can]
        display = np.asarray(_panel(to_display(scene), self.cfg.panel_px, nearest=False))
        session = Session(name=name, scene=scene, display=display, basis=basis)
        self._reset(session)
        return session

    def reset(self, s: Session) -> None:
        """Back to the initial canvas; the scene and its colour basis stay."""
        with self._lock:
            self._reset(s)

    def _reset(self, s: Session) -> None:
        s.state = self._init_state()
        s.canvas = self._grid(s.state.canvas)
        s.glimpses, s.glimpse_px, s.seg_logits, s.top5 = [], None, None, None
        s.policy, s.policy_key, s.policy_t = None, None, 0

    def _init_state(self) -> Any:
        with torch.inference_mode():
            return self.canvit.init_state(1, self.cfg.canvas_grid)

    def _grid(self, canvas: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.canvit.canvas_patch_grid(canvas)[0].float().cpu()  # [G, G, D_can]

    # glimpses

    def glimpse(self, s: Session, viewpoint: Any, source: str) -> Glimpse:
        """Take one glimpse at `viewpoint` ([1]) on the session's canvas."""
        from canvit_model import sample_at_viewpoint
        from canvit_model.layers.fast import clear_workspace

        from .rollout import glimpse_step, no_autocast
        from .visualize import change_maps, to_display

        with self._lock:
            t0 = time.perf_counter()
            out, logits = glimpse_step(self.canvit, s.scene[None], s.state, viewpoint, glimpse_px=self.cfg.glimpse_px,
                                       amp=self.cfg.amp, probe=self.seg.logits if self.seg is not None else None)
            probs = None
            if self.in1k_head is not None:
                with torch.inference_mode(), no_autocast(self.device):
                    probs = self.in1k_head(out.state.recurrent_cls[:, 0]).softmax(-1)[0].cpu()  # [C]
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            latency = (time.perf_counter() - t0) * 1e3
            # the CPU fast path keeps canvas-sized buffers per thread; Gradio serves from a pool of
            # threads, so free them here rather than hold one set per pool thread
            clear_workspace()
            with torch.inference_mode():
                pixels = sample_at_viewpoint(s.scene[None], viewpoint.to(self.device), self.cfg.glimpse_px)[0]
            canvas = self._grid(out.state.canvas)
            change = float(change_maps(canvas[None], s.canvas)[0].mean())
            s.state, s.canvas, s.seg_logits = out.state, canvas, logits
            s.glimpse_px = to_display(pixels)
            top1 = None
            if probs is not None:
                p, i = probs.topk(min(5, probs.numel()))
                s.top5 = {self.class_names[k]: float(v) for v, k in zip(p.tolist(), i.tolist())}
                top1 = float(p[0])
            g = Glimpse(center=(float(viewpoint.centers[0, 0]), float(viewpoint.centers[0, 1])),
                        scale=float(viewpoint.scales[0]), source=source, latency_ms=latency, change=change, top1=top1)
            s.glimpses.append(g)
            return g

    def policy_viewpoint(self, s: Session, name: str, horizon: int, seed: int, *, fresh: bool = False) -> Any:
        """The next viewpoint of policy `name` (horizon T, seed) for this session; a new policy starts when the
        name / T / seed changed, the last one is used up, or `fresh`."""
        from .policies import NEEDS_LOGITS

        if name in NEEDS_LOGITS and self.seg is None:
            raise UserError(f"{name} ranks tiles by the ADE20K probe's predictive entropy: start the demo with "
                            "--ade20k-probe, or choose another policy")
        with self._lock:
            return self._policy_viewpoint(s, name, horizon, seed, fresh)

    def _policy_viewpoint(self, s: Session, name: str, horizon: int, seed: int, fresh: bool) -> Any:
        from .policies import make_policy

        key = (name, horizon, seed)
        if fresh or s.policy is None or s.policy_key != key or s.policy_t >= horizon:
            s.policy = make_policy(name, batch_size=1, num_glimpses=horizon,
                                   generator=torch.Generator().manual_seed(seed), device=self.device)
            s.policy_key, s.policy_t = key, 0
        logits = s.seg_logits if s.policy_t > 0 else None
        vp = s.policy.next(s.policy_t, logits)
        s.policy_t += 1
        return vp

    # pictures

    def render(self, s: Session | None) -> dict[str, Any]:
        """The page's pictures and texts for a session (None: nothing loaded yet)."""
        from PIL import Image, ImageDraw

        from .visualize import _panel, apply_pca, box_px, palette

        if s is None:
            return {"scene": None, "glimpse": None, "canvas": None, "segmentation": None, "top5": None,
                    "latency": "no glimpse yet", "plot": None, "status": "no scene: upload an image or load a sample"}
        p = self.cfg.panel_px
        scene = Image.fromarray(s.display)
        draw = ImageDraw.Draw(scene)
        n = len(s.glimpses)
        taken: dict[tuple[int, int], int] = {}  # label corner -> labels there (boxes sharing a corner)
        for i, g in enumerate(s.glimpses):
            last = i == n - 1
            box = box_px(g.center, g.scale, p)
            draw.rectangle(box, outline=(255, 40, 40) if last else (255, 255, 255), width=3 if last else 1)
            corner = (round(max(box[0], 0)), round(max(box[1], 0)))
            k = taken[corner] = taken.get(corner, -1) + 1
            x, y = corner[0] + 3, corner[1] + 2 + 14 * k  # stacked below the earlier labels of this corner
            draw.rectangle((x - 2, y - 1, x + 8 * len(str(i + 1)) + 2, y + 11), fill=(0, 0, 0))
            draw.text((x, y), str(i + 1), fill=(255, 80, 80) if last else (255, 255, 255))
        out: dict[str, Any] = {"scene": scene}
        out["glimpse"] = _panel(s.glimpse_px, p, nearest=False) if s.glimpse_px is not None else None
        out["canvas"] = _panel(apply_pca(s.basis, s.canvas), p, nearest=True)
        out["segmentation"] = None
        if self.seg is not None and s.seg_logits is not None:
            from canvit_model.segmentation import upsample_logits

            # logits upsampled bilinearly, then argmax (as `visualize`), at <= SEG_PX: 150 classes x 512^2 costs
            # ~0.5 s of CPU a step, 256^2 a quarter of it; the label map is then enlarged (nearest)
            q = min(p, SEG_PX)
            labels = upsample_logits(s.seg_logits, q).argmax(1)[0].cpu().numpy()  # [q, q]
            near = np.arange(p) * q // p
            labels = labels[near][:, near]  # [P, P]
            colours = palette(self.seg.num_classes)[labels]
            out["segmentation"] = Image.fromarray((0.5 * s.display + 0.5 * colours).round().astype(np.uint8))
        out["top5"] = s.top5
        if n:
            last = s.glimpses[-1]
            mean = sum(g.latency_ms for g in s.glimpses) / n
            out["latency"] = f"glimpse {n}: **{last.latency_ms:.1f} ms** (mean over {n}: {mean:.1f} ms)"
        else:
            out["latency"] = "no glimpse yet"
        out["plot"] = self.plot(s) if n else None
        where = f", policy {s.policy_key[0]} step {s.policy_t}/{s.policy_key[1]}" if s.policy_key else ""
        out["status"] = f"scene: {s.name} · glimpses: {n}{where}"
        return out

    def plot(self, s: Session) -> Any:
        """Canvas change (and top-1 probability with an IN1k probe) over t, as a small image."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from PIL import Image

        t = np.arange(1, len(s.glimpses) + 1)
        fig = Figure(figsize=(4.0, 2.4), dpi=80)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot(t, [g.change for g in s.glimpses], "o-", color="tab:blue", label="canvas change")
        ax.set_xlabel("glimpse t")
        ax.set_ylabel("mean 1 - cos", color="tab:blue")
        if s.glimpses[-1].top1 is not None:
            ax2 = ax.twinx()
            ax2.plot(t, [g.top1 for g in s.glimpses], "s-", color="tab:red")
            ax2.set_ylabel("top-1 prob.", color="tab:red")
            ax2.set_ylim(0, 1)
        ax.set_xticks(t if len(t) <= 12 else np.linspace(1, len(t), 6).round())
        fig.tight_layout()
        fig.canvas.draw()
        return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())


class UserError(Exception):
    """Something the user can fix: shown in the page, never a traceback."""


# -- images in -------------------------------------------------------------------------------------


def load_image(path: str | os.PathLike[str]) -> tuple[Any, list[str]]:
    """An uploaded file -> (PIL RGB image, notes for the page). UserError when it is no image."""
    from PIL import Image, UnidentifiedImageError

    notes: list[str] = []
    name = Path(path).name
    try:
        with Image.open(path) as im:
            w, h = im.size
            if max(w, h) > MAX_SIDE:
                im.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced size (fast, little memory)
            im.load()
            mode = im.mode
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                image = Image.new("RGB", rgba.size, (255, 255, 255))
                image.paste(rgba, mask=rgba.getchannel("A"))
                notes.append(f"{name} has transparency ({mode}): flattened onto white")
            else:
                image = im.convert("RGB")
                if mode in ("L", "1", "I", "I;16", "F"):
                    notes.append(f"{name} is greyscale ({mode}): used as RGB with three equal channels")
    except Image.DecompressionBombError as e:
        raise UserError(f"{name} is too large to decode safely ({e}); upload an image under ~89 megapixels") from None
    except (UnidentifiedImageError, SyntaxError, ValueError, OSError) as e:
        why = "not an image Pillow can read" if isinstance(e, UnidentifiedImageError) else f"{type(e).__name__}: {e}"
        raise UserError(f"{name}: {why}; upload a PNG, JPEG, WebP, BMP, GIF or TIFF image") from None
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    if (w, h) != image.size:
        notes.append(f"{name} is {w} x {h} px: downscaled to {image.size[0]} x {image.size[1]} first")
    return image, notes


def sample_scene(name: str, size: int) -> Any:
    """One of the generated sample scenes (canvit_data.synthetic), as a PIL RGB image."""
    from canvit_data.synthetic import draw_scene

    rng = np.random.default_rng(SAMPLE_SCENES[name])
    return draw_scene(rng, size, size, num_classes=6, num_shapes=5).image


def click_viewpoint(index: Any, scale: float, panel_px: int) -> tuple[Any, str | None]:
    """A click at pixel (x, y) of the scene panel -> a Viewpoint centred there with `scale`, moved inside the
    scene if its box would leave it (with a note). UserError for a click outside the picture."""
    from canvit_model import MIN_SCALE, Viewpoint

    try:
        x, y = float(index[0]), float(index[1])
    except (TypeError, ValueError, IndexError):
        raise UserError("click on the scene picture to place a glimpse") from None
    if not (0 <= x < panel_px and 0 <= y < panel_px) or math.isnan(x + y):
        raise UserError(f"that click ({x:.0f}, {y:.0f}) is outside the scene ({panel_px} x {panel_px} px)")
    scale = float(min(max(scale, MIN_SCALE), 1.0))
    cy, cx = 2 * (y + 0.5) / panel_px - 1, 2 * (x + 0.5) / panel_px - 1
    lim = 1 - scale
    ny, nx = min(max(cy, -lim), lim), min(max(cx, -lim), lim)
    note = None
    if (ny, nx) != (cy, cx):
        note = f"the glimpse box (scale {scale:.2f}) was moved inside the scene"
    return Viewpoint(centers=torch.tensor([[ny, nx]], dtype=torch.float32),
                     scales=torch.tensor([scale], dtype=torch.float32)), note


# -- the page --------------------------------------------------------------------------------------

OUTPUTS = ("scene", "glimpse", "canvas", "segmentation", "top5", "latency", "plot", "status")


def build_app(engine: Engine) -> Any:
    """The Gradio Blocks app over one engine; per-session state in gr.State."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from canvit_model.viewpoints import MIN_SCALE

    from .policies import POLICY_NAMES

    p = engine.cfg.panel_px
    notes = list(engine.notes)
    if engine.seg is None:
        notes.append("eg-c2f (entropy-guided C2F) needs an ADE20K probe: start with --ade20k-probe to use it "
                     "(and to see the segmentation)")
    if engine.in1k_head is None:
        notes.append("no ImageNet-1k probe: start with --in1k-probe to see the top-5 classes")

    def safe(fn):
        """Run a handler; a UserError (or any other failure) becomes a message in the page, the state stays."""

        def run(session, *args):
            try:
                result = fn(session, *args)
                if isinstance(result, Iterator):
                    yield from result
                else:
                    yield result
            except UserError as e:
                yield page(session, f"⚠️ {e}")
            except Exception as e:  # never a traceback or a dead page
                LOG.exception("demo handler failed")
                yield page(session, f"⚠️ something went wrong: {type(e).__name__}: {e}")

        # Gradio reads the handler's signature (and injects gr.SelectData by annotation): show it fn's
        run.__name__ = fn.__name__
        run.__signature__ = inspect.signature(fn)
        run.__annotations__ = dict(fn.__annotations__)
        return run

    def page(session: Session | None, message: str = "") -> tuple:
        r = engine.render(session)
        n = len(session.glimpses) if session is not None else 0
        r["top5"] = gr.Label(r["top5"], label=f"top-5 ImageNet-1k (after glimpse {n})" if n else "top-5 ImageNet-1k")
        return (session, *[r[k] for k in OUTPUTS], message)

    def need_scene(session: Session | None) -> Session:
        if session is None:
            raise UserError("load a scene first: upload an image or pick a sample scene")
        return session

    def on_upload(session, path):
        if not path:
            return page(session, "")
        image, notes_ = load_image(path)
        session = engine.new_session(image, Path(path).name)
        return page(session, " · ".join(["loaded " + session.name, *notes_]))

    def on_sample(session, name):
        if name not in SAMPLE_SCENES:
            raise UserError(f"choose one of the sample scenes: {', '.join(SAMPLE_SCENES)}")
        session = engine.new_session(sample_scene(name, engine.cfg.scene_size), name)
        return page(session, f"loaded {name}")

    def on_click(session, scale, evt):
        session = need_scene(session)
        vp, note = click_viewpoint(evt.index, scale, p)
        g = engine.glimpse(session, vp, "click")
        return page(session, note or f"glimpse {len(session.glimpses)} at your click (scale {g.scale:.2f})")

    on_click.__annotations__ = {"evt": gr.SelectData}  # a real class (this module's annotations are strings)

    def glimpses(horizon) -> int:
        try:
            return min(max(int(horizon), 1), MAX_RUN)
        except (TypeError, ValueError):
            raise UserError(f"T must be a number of glimpses in [1, {MAX_RUN}], got {horizon!r}") from None

    def on_step(session, policy, horizon, seed):
        session = need_scene(session)
        horizon = glimpses(horizon)
        vp = engine.policy_viewpoint(session, policy, horizon, int(seed or 0))
        engine.glimpse(session, vp, policy)
        return page(session, f"{policy}: glimpse {session.policy_t} of {horizon}")

    def on_run(session, policy, horizon, seed):
        session = need_scene(session)
        horizon = glimpses(horizon)
        for i in range(horizon):
            vp = engine.policy_viewpoint(session, policy, horizon, int(seed or 0), fresh=i == 0)
            engine.glimpse(session, vp, policy)
            yield page(session, f"{policy}: glimpse {i + 1} of {horizon}" + (" (done)" if i + 1 == horizon else ""))

    def on_reset(session):
        session = need_scene(session)
        engine.reset(session)
        return page(session, "canvas reset (the scene stays)")

    with gr.Blocks(title="CanViT demo", analytics_enabled=False) as app:
        state = gr.State(None)
        gr.Markdown("## CanViT: look through the model's eyes\nUpload an image or load a sample scene, then "
                    "**click on the scene** to place the next glimpse (scale from the slider) or let a policy "
                    "choose. Canvas colours: one PCA basis per scene, so they are comparable over time.")
        if notes:
            gr.Markdown("\n".join(f"- {n}" for n in notes), elem_id="notes")
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                upload = gr.File(label="upload an image", type="filepath", elem_id="upload")
                with gr.Row():
                    sample = gr.Dropdown(list(SAMPLE_SCENES), value=next(iter(SAMPLE_SCENES)), label="sample scene",
                                         elem_id="sample")
                    load_sample = gr.Button("load sample", elem_id="load-sample")
                scale = gr.Slider(MIN_SCALE, 1.0, value=0.25, step=0.01, label="click glimpse scale (1 = whole scene)",
                                  elem_id="scale")
                policy = gr.Dropdown(list(POLICY_NAMES), value="c2f", label="policy", elem_id="policy")
                with gr.Row():
                    horizon = gr.Slider(1, MAX_RUN, value=10, step=1, label="T (glimpses)", elem_id="horizon")
                    seed = gr.Number(0, precision=0, label="seed", elem_id="seed")
                with gr.Row():
                    step = gr.Button("step", variant="primary", elem_id="step")
                    run = gr.Button("run T", elem_id="run")
                    reset = gr.Button("reset", elem_id="reset")
                message = gr.Markdown("", elem_id="message")
                status = gr.Markdown("no scene: upload an image or load a sample", elem_id="status")
                latency = gr.Markdown("no glimpse yet", elem_id="latency")
                top5 = gr.Label(num_top_classes=5, label="top-5 ImageNet-1k", visible=engine.in1k_head is not None,
                                elem_id="top5")
            with gr.Column(scale=3):
                with gr.Row():
                    scene = gr.Image(label="scene (click to glimpse)", type="pil", format="png", interactive=False,
                                     height=p, elem_id="scene")
                    glimpse = gr.Image(label="glimpse", type="pil", format="png", interactive=False, height=p,
                                       elem_id="glimpse")
                with gr.Row():
                    canvas = gr.Image(label="canvas (PCA)", type="pil", format="png", interactive=False, height=p,
                                      elem_id="canvas")
                    seg = gr.Image(label="segmentation (ADE20K probe)", type="pil", format="png", interactive=False,
                                   height=p, visible=engine.seg is not None, elem_id="segmentation")
                plot = gr.Image(label="over t", type="pil", format="png", interactive=False, elem_id="plot")
        outs = [state, scene, glimpse, canvas, seg, top5, latency, plot, status, message]
        # the upload box empties after each file, ready for the next one (the scene panel shows what was loaded)
        upload.upload(safe(on_upload), [state, upload], outs).then(lambda: None, None, upload)
        load_sample.click(safe(on_sample), [state, sample], outs)
        scene.select(safe(on_click), [state, scale], outs)
        step.click(safe(on_step), [state, policy, horizon, seed], outs)
        run.click(safe(on_run), [state, policy, horizon, seed], outs)
        reset.click(safe(on_reset), [state], outs)
    return app


def theme() -> Any:
    """Gradio's default look with system fonts only: nothing to fetch from a font CDN."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


# -- command line ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from canvit_model import PRESETS, TEST_PRESETS
    from canvit_model.releases import FLAGSHIP
    from canvit_results.cli import int_at_least

    p = argparse.ArgumentParser(
        prog="canvit-eval demo",
        description="A browser app: upload an image (or load a sample scene), place glimpses by clicking or let a "
                    "policy choose, and see the glimpse boxes, the canvas (PCA), the segmentation, the top-5 "
                    "classes and the latency after every glimpse. Needs canvit-eval[demo] (Gradio).",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default=None,
                     help=f"CanViT pretraining checkpoint: hub id or local directory (default the released CanViT-B, {FLAGSHIP})")
    src.add_argument("--random-init", metavar="PRESET", default=None, choices=[*PRESETS, *TEST_PRESETS],
                     help="instead of --model: random weights of a named preset, e.g. canvitb16 or test-tiny "
                          f"(one of {', '.join([*PRESETS, *TEST_PRESETS])}); no download")
    p.add_argument("--ade20k-probe", default=None,
                   help="ADE20K segmentation probe of this canvas grid, hub id or directory (default none: no "
                        "segmentation, no eg-c2f)")
    p.add_argument("--in1k-probe", default=None,
                   help="DINOv3 ImageNet-1k linear probe, hub id or directory (default none: no top-5)")
    p.add_argument("--in1k-labels", default=None, metavar="FILE",
                   help="class names, one a line in class order (default: the probe config's class_names, else "
                        "'class N')")
    p.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=_port, default=7860, help="port (default 7860; 0 = any free port)")
    p.add_argument("--scene-size", type=int_at_least(16, "--scene-size"), default=512,
                   help="scene side in px (default 512)")
    p.add_argument("--canvas-grid", type=int_at_least(1, "--canvas-grid"), default=None,
                   help="canvas grid G (default scene size / 16)")
    p.add_argument("--glimpse-px", type=int_at_least(16, "--glimpse-px"), default=128,
                   help="glimpse side in px, a multiple of 16 (default 128)")
    p.add_argument("--threads", type=int_at_least(1, "--threads"), default=None,
                   help="torch CPU threads (default torch's: one per core; 1 is faster on a busy machine)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast on CUDA (CPU is always fp32; default on)")
    return p


def _port(v: str) -> int:
    try:
        x = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port must be an integer in [0, 65535], got {v!r}") from None
    if not 0 <= x <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be an integer in [0, 65535], got {x}")
    return x


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def prepare(argv: Sequence[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """Parse, check and load (usage errors exit 2), build the app: (Gradio app, keyword arguments of launch)."""
    from canvit_model.releases import FLAGSHIP
    from canvit_results.cli import pick_device

    from .inputs import local_path

    p = build_parser()
    args = p.parse_args(argv)
    grid = args.canvas_grid or args.scene_size // 16
    if args.glimpse_px % 16 or args.glimpse_px > args.scene_size:
        p.error(f"--glimpse-px must be a multiple of 16 and <= --scene-size ({args.scene_size}), got {args.glimpse_px}")
    if grid < 1:
        p.error(f"--canvas-grid must be >= 1, got {grid}")
    for flag, spec in (("--model", args.model), ("--ade20k-probe", args.ade20k_probe), ("--in1k-probe", args.in1k_probe)):
        if spec is not None:
            try:
                local_path(spec)
            except FileNotFoundError as e:
                p.error(f"{flag} {spec!r}: {e}")
    if args.in1k_labels is not None and not Path(args.in1k_labels).is_file():
        p.error(f"--in1k-labels {args.in1k_labels!r} is not a file")
    if importlib.util.find_spec("gradio") is None:
        p.error("the demo needs Gradio: pip install 'canvit-eval[demo]' (or uv sync --extra demo)")
    device = pick_device(args.device, parser=p)
    if args.threads:
        torch.set_num_threads(args.threads)

    from canvit_model import (
        CanViTForPretraining,
        SegmentationProbe,
        fuse_probe,
        load_linear_probe,
    )

    notes: list[str] = []
    if args.random_init:
        model = CanViTForPretraining.from_preset(args.random_init).to(device)
        # random weights have no teacher statistics: identity ones let a probe run (its outputs mean nothing)
        model.teacher_cls_standardizer.fitted.fill_(True)
        notes.append(f"random weights ({args.random_init}): what you see is untrained; pass --model for a real one")
    else:
        spec = args.model or FLAGSHIP
        try:
            model = CanViTForPretraining.from_pretrained(spec, map_location=device)
        except (OSError, ValueError) as e:
            why = str(e).split(". ")[0].rstrip(".")  # the first sentence: what failed (offline, not found, ...)
            p.error(f"--model {spec!r}: {why}. Pass --model DIR (a local checkpoint directory with config.json + "
                    "model.safetensors) or --random-init PRESET (e.g. canvitb16) to try the UI with random weights")
    seg_probe = head = names = None
    try:
        if args.ade20k_probe:
            seg_probe = SegmentationProbe.from_pretrained(args.ade20k_probe, map_location=device)
    except (OSError, ValueError) as e:
        p.error(f"--ade20k-probe {args.ade20k_probe!r}: cannot load it ({e})")
    if seg_probe is not None and seg_probe.config.embed_dim != model.canvit.canvas_dim:
        p.error(f"--ade20k-probe takes {seg_probe.config.embed_dim}-dim features; this model's canvas has "
                f"{model.canvit.canvas_dim}")
    if args.in1k_probe:
        try:
            probe = load_linear_probe(args.in1k_probe)
            head = fuse_probe(model.teacher_cls_readout, model.teacher_cls_standardizer, probe).to(device)
        except (OSError, ValueError) as e:
            p.error(f"--in1k-probe {args.in1k_probe!r}: cannot use it ({e})")
        names = probe.config.get("class_names")
        if args.in1k_labels is not None:
            names = [ln.strip() for ln in Path(args.in1k_labels).read_text().splitlines() if ln.strip()]
            if len(names) != probe.out_features:
                p.error(f"--in1k-labels has {len(names)} names but the probe has {probe.out_features} classes")
        if not names:
            notes.append("class names: the probe carries none; pass --in1k-labels FILE (one name a line)")
    cfg = DemoConfig(scene_size=args.scene_size, canvas_grid=grid, glimpse_px=args.glimpse_px, amp=args.amp)
    engine = Engine(model, cfg, device=device, seg_probe=seg_probe, in1k_head=head, class_names=names, notes=notes)
    app = build_app(engine)
    port = args.port or _free_port(args.host)
    return app, dict(server_name=args.host, server_port=port, theme=theme(), show_error=False,
                     footer_links=[], max_file_size="200mb")


def main(argv: Sequence[str] | None = None) -> int:
    app, launch = prepare(argv)
    print(f"canvit-eval demo: open http://{launch['server_name']}:{launch['server_port']} (Ctrl-C stops it)")
    app.queue(default_concurrency_limit=4).launch(**launch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
