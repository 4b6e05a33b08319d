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
    """One panel per measure, one group per cell (its name a line per comma-separated part), the
    median of the runs per transport as bars (benches/bars.py)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bars
    names = {"ws": "WebSocket push", "http": "HTTP pull"}
    panels = []
    for title, get in measures:
        groups = []
        for cell, by in cells.items():
            values = {names[t]: med([get(r) for r in by[t]]) for t in ("ws", "http") if by.get(t)}
            groups.append({"label": cell.replace(" -> ", "→").replace(", ", "\n"),
                           "bars": {k: v for k, v in values.items() if v is not None}})
        panels.append({"title": f"{title} (median of runs)", "groups": groups})
    bars.write({"panels": panels}, path)


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
