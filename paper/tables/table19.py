"""Table 19: inference latency, CanViT-B (one 128 px glimpse, canvas = scene/16) vs DINOv3 ViT-B/16 (Appendix I).

Measured rows come from every benchmarks/results/*.csv written by `canvit-latency` (one row per timed
call) and from the `latency` runs of the results store (same columns); a configuration's latency is the minimum over its calls (and passes), memory the CUDA peak.
The paper's rows are kept below as data, labelled "paper". Paper configurations we have no measurement
for get one "not measured" row per device, naming the command that would fill it.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from canvit_results import load_runs

from paper.tablelib import Context, Pending, Table, default_results

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
CMD = "uv run --package canvit-eval canvit-latency"

# Paper Table 19: (device, threads or None, precision) -> scene px -> (CanViT ms, CanViT MB, DINOv3 ms, DINOv3 MB)
PAPER_CPU = "AMD Ryzen 9 7950X"
PAPER_GPU = "NVIDIA GeForce RTX 4090"
PAPER: dict[tuple[str, int | None, str], dict[int, tuple[float, float | None, float, float | None]]] = {
    (PAPER_CPU, 1, "fp32"): {128: (143, None, 123, None), 256: (154, None, 413, None),
                             512: (224, None, 2048, None), 1024: (488, None, 13065, None)},
    (PAPER_CPU, 4, "fp32"): {128: (54, None, 45.8, None), 256: (59.9, None, 141, None),
                             512: (90.7, None, 700, None), 1024: (201, None, 4141, None)},
    (PAPER_CPU, 8, "fp32"): {128: (30.9, None, 26.4, None), 256: (37.5, None, 65.4, None),
                             512: (79.8, None, 451, None), 1024: (175, None, 2333, None)},
    (PAPER_CPU, 16, "fp32"): {128: (30.4, None, 24.9, None), 256: (39, None, 108, None),
                              512: (101, None, 589, None), 1024: (180, None, 1978, None)},
    (PAPER_CPU, 32, "fp32"): {128: (35.7, None, 26.1, None), 256: (42, None, 53.9, None),
                              512: (143, None, 256, None), 1024: (233, None, 2152, None)},
    (PAPER_GPU, None, "bf16"): {128: (2.52, 397, 2.1, 359), 256: (2.47, 402, 2.21, 362),
                                512: (2.42, 419, 3.26, 388), 1024: (2.36, 499, 12.4, 416),
                                2048: (5.02, 794, 93, 607)},
    (PAPER_GPU, None, "fp32"): {128: (1.94, 395, 1.57, 356), 256: (2.08, 408, 2.66, 359),
                                512: (2.61, 430, 8.68, 378), 1024: (4.64, 544, 54.2, 454),
                                2048: (13.9, 996, 537, 758)},
}
# printed speedup column (t_DINOv3 / t_CanViT), for checking
PAPER_SPEEDUP = {
    (PAPER_CPU, 1, "fp32"): [0.9, 2.7, 9.1, 26.8], (PAPER_CPU, 4, "fp32"): [0.8, 2.4, 7.7, 20.6],
    (PAPER_CPU, 8, "fp32"): [0.9, 1.7, 5.7, 13.3], (PAPER_CPU, 16, "fp32"): [0.8, 2.8, 5.8, 11],
    (PAPER_CPU, 32, "fp32"): [0.7, 1.3, 1.8, 9.2],
    (PAPER_GPU, None, "bf16"): [0.8, 0.9, 1.3, 5.3, 18.5], (PAPER_GPU, None, "fp32"): [0.8, 1.3, 3.3, 11.7, 38.7],
}

COLUMNS = ["Source", "Device", "Scene (px)", "CanViT-B ms", "CanViT-B MB", "DINOv3 ViT-B/16 ms", "DINOv3 MB",
           "Speedup", "Timed calls (CanViT / DINOv3)", "Max rel. diff vs fp32 (CanViT / DINOv3)"]
# canvit-latency's CPU modes: plain fp32 ops (the paper's setting) and canvit-model's fast paths
CPU_MODE_LABELS = {"fp32": "", "fp32-fast": "fp32 oneDNN fast path", "bf16-fast": "bf16 fast path",
                   "bf16": "AMP bf16"}


def device_label(device: str, machine: str, threads: int | None, precision: str, compiled: bool = True) -> str:
    if device == "cuda":
        p = "AMP bf16" if precision == "bf16" else "fp32"
        return f"{machine} ({p}{'' if compiled else ', eager'})"
    mode = CPU_MODE_LABELS.get(precision, precision)
    return f"{machine} ({threads}T{', ' + mode if mode else ''}{', compiled' if compiled else ''})"


def load_results(paths: list[Path] | None = None, results: Path | None = None) -> list[dict[str, str]]:
    """Timed calls as CSV-style string dicts: the CSVs `paths` (default benchmarks/results/*.csv) and the
    `latency` kind of the results store `results` (None: not read)."""
    paths = sorted(RESULTS.glob("*.csv")) if paths is None else paths
    rows: list[dict[str, str]] = []
    for p in paths:
        with open(p, newline="", encoding="utf-8") as f:
            rows.extend(csv.DictReader(f))
    if results is not None:
        df = load_runs(results, "latency", missing_ok=True)
        if not df.empty:
            df = df.drop(columns=["kind", "run_key"])
            for rec in df.to_dict("records"):
                rows.append({k: _csv_str(v) for k, v in rec.items()})
    return rows


def _csv_str(v) -> str:
    """A value pandas parsed back to its CSV text ("" for missing, 1.0 -> "1" for integral floats)."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def ctx_results(ctx: Context | None) -> tuple[list[Path] | None, Path | None]:
    ctx = ctx or Context(results=default_results())
    return (list(ctx.latency_csvs) if ctx.latency_csvs is not None else None), ctx.results


def where(store: Path | None) -> str:
    return Context(results=store).where if store is not None else "—"


def summarize(rows: list[dict[str, str]]) -> dict[tuple, dict[int, dict[str, tuple[float, float | None, int, float | None]]]]:
    """(device, machine, threads, precision, compiled) -> scene -> model -> (min ms, peak MiB, n calls, max
    relative difference of the output vs plain fp32, None where not recorded)."""
    ms: dict[tuple, list[float]] = defaultdict(list)
    mem: dict[tuple, list[float]] = defaultdict(list)
    err: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        k = (r["device"], r["machine"], int(float(r["threads"])), r["precision"], r["compiled"] in ("1", "True", "true"),
             int(r["scene_px"]), r["model"])
        ms[k].append(float(r["ms"]))
        if r.get("peak_mem_mib"):
            mem[k].append(float(r["peak_mem_mib"]))
        if r.get("max_rel_diff"):
            err[k].append(float(r["max_rel_diff"]))
    out: dict[tuple, dict[int, dict[str, tuple[float, float | None, int, float | None]]]] = defaultdict(
        lambda: defaultdict(dict))
    for k, v in ms.items():
        *group, scene, model = k
        out[tuple(group)][scene][model] = (min(v), max(mem[k]) if mem[k] else None, len(v),
                                           max(err[k]) if err[k] else None)
    return out


def _ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _speed(c: float | None, d: float | None) -> str:
    return "—" if c is None or d is None else f"{d / c:.1f}×"


def _err(m: tuple | None) -> str:
    return "—" if not m or m[3] is None else f"{m[3]:.1e}"


def measured_rows(results: list[dict[str, str]]) -> list[list]:
    rows = []
    summary = summarize(results)
    for group in sorted(summary, key=lambda g: (g[0] != "cpu", g[1], g[2], g[3], g[4])):
        device, machine, threads, precision, compiled = group
        label = device_label(device, machine, threads, precision, compiled)
        for scene in sorted(summary[group]):
            m = summary[group][scene]
            c, d = m.get("canvit-b"), m.get("dinov3-b")
            rows.append([
                "ours", label, scene, _ms(c and c[0]), "—" if not c or c[1] is None else f"{c[1]:.0f}",
                _ms(d and d[0]), "—" if not d or d[1] is None else f"{d[1]:.0f}",
                _speed(c and c[0], d and d[0]), f"{c[2] if c else 0} / {d[2] if d else 0}",
                f"{_err(c)} / {_err(d)}",
            ])
    return rows


def paper_rows() -> list[list]:
    rows = []
    for (machine, threads, precision), by_scene in PAPER.items():
        device = "cuda" if threads is None else "cpu"
        label = device_label(device, machine, threads, precision, compiled=device == "cuda")
        for (scene, (c, cm, d, dm)), sp in zip(by_scene.items(), PAPER_SPEEDUP[(machine, threads, precision)]):
            rows.append(["paper", label, scene, f"{c:g}", "—" if cm is None else f"{cm:g}", f"{d:g}",
                         "—" if dm is None else f"{dm:g}", f"{sp:g}×", "≥ 50", "—"])
    return rows


def unmeasured(results: list[dict[str, str]]) -> list[tuple[str, Pending]]:
    """Paper configurations with no measured counterpart: (paper device label, reason + command)."""
    summary = summarize(results)
    have_cpu_threads = {g[2] for g in summary if g[0] == "cpu" and g[3] == "fp32" and not g[4]}
    have_cuda = {g[3] for g in summary if g[0] == "cuda"}
    out = []
    for machine, threads, precision in PAPER:
        label = device_label("cuda" if threads is None else "cpu", machine, threads, precision,
                             compiled=threads is None)
        if threads is None:
            if precision not in have_cuda:
                out.append((label, Pending(f"{CMD} --device cuda", "a CUDA GPU")))
        elif threads not in have_cpu_threads:
            out.append((label, Pending(f"{CMD} --threads {threads}", f"a CPU with ≥ {threads} cores")))
    return out


def build(ctx: Context | None = None) -> list[Table]:
    result_paths, store = ctx_results(ctx)
    results = load_results(result_paths, store)
    rows = measured_rows(results)
    gaps = unmeasured(results)
    for label, why in gaps:
        rows.append(["ours", f"as paper: {label}", "—", why, "—", why, "—", "", "", ""])
    rows.extend(paper_rows())
    srcs = sorted({r.get("date", "") for r in results})
    notes = [
        "Latency = minimum over all timed calls (B = 1, synchronised per call, 3 warm-up calls); MB = CUDA "
        "peak allocated memory after warm-up (MiB for ours). CanViT-B: init_state + one 128 px glimpse, canvas "
        "grid = scene/16; DINOv3 ViT-B/16: one forward at scene². Random weights. Speedup = t_DINOv3 / t_CanViT.",
        f"Ours: {len(results)} timed calls from {len(list(RESULTS.glob('*.csv'))) if result_paths is None else len(result_paths)} "
        f"file(s) under benchmarks/results/ and the `latency` runs in {where(store)} (dates {', '.join(s for s in srcs if s) or '—'}); produce more with "
        f"`{CMD}` (CPU) or `{CMD} --device cuda`. CPU rows are eager (modes below); short-budget runs on a shared "
        "machine are noisier than the paper's 30 s / 60 s budgets.",
        "CPU modes: plain = the fp32 eager ops the paper timed; 'fp32 oneDNN fast path' = canvit-model's default "
        "CPU inference (linears on oneDNN-packed weights, canvas attention as matmul-softmax-matmul); 'bf16 fast "
        "path' = its opt-in bf16 linears with canvas, RoPE, VPE, LayerNorm and residuals in fp32. Max rel. diff = "
        "max |out - out_fp32| / max |out_fp32| of the canvas (CanViT) or tokens (DINOv3) vs the plain fp32 forward, "
        "same weights and inputs (— : not recorded by the run).",
        "Paper rows: Table 19 as printed (AMD Ryzen 9 7950X, 16 cores, eager fp32; RTX 4090, torch.compile), "
        "speedups as printed (computed from unrounded times).",
    ]
    if not results:
        notes.insert(0, f"No measured rows: no result CSV under benchmarks/results/ and no `latency` run in "
                        f"{where(store)} — run `{CMD}`.")
    return [Table.from_rows(19, "Inference latency: CanViT-B vs DINOv3 ViT-B/16 (B = 1, min over timed calls)",
                            COLUMNS, rows, notes, ours=["CanViT-B ms", "DINOv3 ViT-B/16 ms"],
                            ours_rows=[r[0] == "ours" for r in rows])]
