#!/usr/bin/python3
"""Summarises benches/abr.mjs results and draws them as an SVG (no plotting library needed).

  python3 benches/abr_plot.py target/bench-abr.json docs/abr.svg
  python3 benches/abr_plot.py target/bench-live.json docs/abr-live.svg [more.json ...]

Prints a Markdown table (median of the runs per cell and transport, with the range) and writes
one panel per measure: VOD stall time, first frame and average video bitrate played; live
latency, stalls and stall time. Live results from more than one file (say an on-air channel and
one that starts with the player) are drawn side by side.
"""
import json
import os
import statistics
import sys
from collections import OrderedDict


def load(path):
    with open(path) as f:
        return json.load(f)


def summarise(rows):
    """Runs by cell and transport; a run whose player never started (the harness's page load
    failed before any media: `played` 0) is left out of the medians and counted apart."""
    cells = OrderedDict()
    failed = OrderedDict()
    for r in rows:
        if not r.get("played"):
            failed.setdefault((r["cell"], r["transport"]), 0)
            failed[(r["cell"], r["transport"])] += 1
            continue
        cells.setdefault(r["cell"], {}).setdefault(r["transport"], []).append(r)
    return cells, failed


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_range(values, scale=1.0, digits=1):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    m = statistics.median(values) / scale
    lo, hi = min(values) / scale, max(values) / scale
    if lo == hi:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def live_table(cells):
    out = ["| link | transport | live latency s | stalls | stall s | first frame s | pushed / used by the player |",
           "|---|---|---|---|---|---|---|"]
    for cell, by in cells.items():
        for t in ("ws", "http"):
            rs = by.get(t, [])
            if not rs:
                continue
            used = [r["usedBytes"] / r["pushedBytes"] * 100 for r in rs if r["pushedBytes"]]
            out.append("| {} | {} | {} | {} | {} | {} | {} |".format(
                cell, "WebSocket push" if t == "ws" else "HTTP pull",
                fmt_range([r.get("liveLatency") for r in rs], digits=2),
                fmt_range([r["stalls"] for r in rs], digits=0),
                fmt_range([r["stallMs"] for r in rs], 1000.0),
                fmt_range([r["firstFrameMs"] for r in rs], 1000.0, 2),
                (fmt_range(used, digits=0) + " %") if used else "–",
            ))
    return "\n".join(out)


def table(cells):
    out = ["| link | transport | stalls | stall s | first frame s | avg video kbit/s | pushed MB | used by the player |",
           "|---|---|---|---|---|---|---|---|"]
    for cell, by in cells.items():
        for t in ("ws", "http"):
            rs = by.get(t, [])
            if not rs:
                continue
            pushed = [r["pushedBytes"] for r in rs]
            used = [r["usedBytes"] / r["pushedBytes"] * 100 for r in rs if r["pushedBytes"]]
            out.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
                cell, "WebSocket push" if t == "ws" else "HTTP pull",
                fmt_range([r["stalls"] for r in rs], digits=0),
                fmt_range([r["stallMs"] for r in rs], 1000.0),
                fmt_range([r["firstFrameMs"] for r in rs], 1000.0, 2),
                fmt_range([r["avgKbit"] for r in rs], digits=0),
                fmt_range(pushed, 1e6, 2) if t == "ws" else "–",
                (fmt_range(used, digits=0) + " %") if used else "–",
            ))
    return "\n".join(out)


VOD_MEASURES = [
    ("stall time (s)", lambda r: r["stallMs"] / 1000.0),
    ("first frame (s)", lambda r: (r["firstFrameMs"] or 0) / 1000.0),
    ("avg video kbit/s", lambda r: r["avgKbit"] or 0),
]
LIVE_MEASURES = [
    ("live latency (s)", lambda r: r.get("liveLatency") or 0),
    ("stalls", lambda r: r["stalls"]),
    ("stall time (s)", lambda r: r["stallMs"] / 1000.0),
]


def svg(cells, path, measures=VOD_MEASURES):
    names = list(cells)
    pw, ph, pad = 300, 190, 40
    width = pad + len(measures) * (pw + pad)
    height = ph + 120
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    colors = {"ws": "#2b6cb0", "http": "#c05621"}
    for mi, (title, get) in enumerate(measures):
        x0 = pad + mi * (pw + pad)
        vals = [get(r) for by in cells.values() for rs in by.values() for r in rs]
        top = max(vals + [1e-9]) * 1.15
        parts.append(f'<text x="{x0}" y="20" font-weight="bold">{title} (median of runs; bars)</text>')
        parts.append(f'<line x1="{x0}" y1="{30 + ph}" x2="{x0 + pw}" y2="{30 + ph}" stroke="black"/>')
        gw = pw / max(1, len(names))
        for ci, name in enumerate(names):
            for ti, t in enumerate(("ws", "http")):
                rs = cells[name].get(t, [])
                if not rs:
                    continue
                v = med([get(r) for r in rs])
                h = 0 if v is None else v / top * ph
                bx = x0 + ci * gw + 6 + ti * (gw - 12) / 2
                bw = (gw - 12) / 2 - 2
                parts.append(f'<rect x="{bx:.1f}" y="{30 + ph - h:.1f}" width="{bw:.1f}" height="{h:.1f}" fill="{colors[t]}"/>')
                parts.append(f'<text x="{bx + bw / 2:.1f}" y="{26 + ph - h:.1f}" text-anchor="middle">{v:.1f}</text>')
            # One line per comma-separated part of the cell's name.
            for li, label in enumerate(name.replace(" -> ", "→").split(", ")):
                parts.append(f'<text x="{x0 + ci * gw + gw / 2:.1f}" y="{48 + ph + li * 11}" text-anchor="middle" font-size="9">{label}</text>')
    ly = height - 30
    parts.append(f'<rect x="{pad}" y="{ly - 9}" width="10" height="10" fill="{colors["ws"]}"/><text x="{pad + 14}" y="{ly}">WebSocket push</text>')
    parts.append(f'<rect x="{pad + 130}" y="{ly - 9}" width="10" height="10" fill="{colors["http"]}"/><text x="{pad + 144}" y="{ly}">HTTP pull</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    rows = load(sys.argv[1])
    live = any(r.get("liveLatency") is not None for r in rows)
    # Live: further result files after the SVG path (say one on a channel on air, one on a
    # channel that starts with the player); each file's cells are then named by its file name.
    if live and len(sys.argv) > 3:
        rows = []
        for path in [sys.argv[1]] + sys.argv[3:]:
            name = os.path.splitext(os.path.basename(path))[0]
            for r in load(path):
                r["cell"] = f"{r['cell']}, {name}"
                rows.append(r)
    cells, failed = summarise(rows)
    print(live_table(cells) if live else table(cells))
    for (cell, t), n in failed.items():
        print(f"\n{n} run(s) of {cell} / {t} did not start (left out)")
    if len(sys.argv) > 2:
        svg(cells, sys.argv[2], LIVE_MEASURES if live else VOD_MEASURES)


if __name__ == "__main__":
    main()
