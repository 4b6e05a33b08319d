#!/usr/bin/python3
"""Grouped bar charts as SVG, with no plotting library: the benchmarks against nginx draw their
results with it.

  python3 benches/bars.py SPEC.json OUT.svg     # or SPEC on standard input: -

SPEC: {"title": "...", "panels": [{"title": "req/s", "groups": [{"label": "h2c",
"bars": {"dashpush": 80000, "nginx": 48000}, "target": 62400}]}]}. Each panel is one measure;
a group's bars share a colour per series (the bars' names); an optional target is drawn as a
dashed line over its group.
"""
import json
import sys

COLOURS = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1"]


def fmt(v):
    if v >= 10000:
        return f"{v / 1000:.0f}k"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def svg(spec):
    panels = spec["panels"]
    series = []
    for p in panels:
        for g in p["groups"]:
            for name in g["bars"]:
                if name not in series:
                    series.append(name)
    colour = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(series)}
    pw, ph, pad, top_pad = 300, 170, 40, 50
    width = max(pad + len(panels) * (pw + pad), 2 * pad + 8 * len(spec.get("title", "")))
    height = top_pad + ph + 80
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{pad}" y="18" font-weight="bold" font-size="13">{spec.get("title", "")}</text>']
    base = top_pad + ph
    for pi, p in enumerate(panels):
        x0 = pad + pi * (pw + pad)
        values = [v for g in p["groups"] for v in g["bars"].values()] + [g["target"] for g in p["groups"] if g.get("target")]
        top = max(values + [1e-9]) * 1.15
        out.append(f'<text x="{x0}" y="{top_pad - 12}" font-weight="bold">{p["title"]}</text>')
        out.append(f'<line x1="{x0}" y1="{base}" x2="{x0 + pw}" y2="{base}" stroke="black"/>')
        gw = pw / max(1, len(p["groups"]))
        for gi, g in enumerate(p["groups"]):
            n = max(1, len(g["bars"]))
            bw = (gw - 12) / n - 2
            for bi, (name, v) in enumerate(g["bars"].items()):
                h = v / top * ph
                bx = x0 + gi * gw + 6 + bi * (bw + 2)
                out.append(f'<rect x="{bx:.1f}" y="{base - h:.1f}" width="{bw:.1f}" height="{h:.1f}" fill="{colour[name]}"/>')
                out.append(f'<text x="{bx + bw / 2:.1f}" y="{base - h - 4:.1f}" text-anchor="middle" font-size="10">{fmt(v)}</text>')
            if g.get("target"):
                ty = base - g["target"] / top * ph
                out.append(f'<line x1="{x0 + gi * gw + 2:.1f}" y1="{ty:.1f}" x2="{x0 + (gi + 1) * gw - 2:.1f}" y2="{ty:.1f}" stroke="black" stroke-dasharray="4 3"/>')
            for li, label in enumerate(g["label"].split("\n")):
                out.append(f'<text x="{x0 + gi * gw + gw / 2:.1f}" y="{base + 16 + li * 11}" text-anchor="middle" font-size="10">{label}</text>')
    lx, ly = pad, height - 16
    for name in series:
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colour[name]}"/><text x="{lx + 14}" y="{ly}">{name}</text>')
        lx += 24 + 7 * len(name)
    if any(g.get("target") for p in panels for g in p["groups"]):
        out.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 20}" y2="{ly - 4}" stroke="black" stroke-dasharray="4 3"/><text x="{lx + 24}" y="{ly}">target</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write(spec, path):
    with open(path, "w") as f:
        f.write(svg(spec))


def main():
    src = sys.stdin if sys.argv[1] == "-" else open(sys.argv[1])
    write(json.load(src), sys.argv[2])


if __name__ == "__main__":
    main()
