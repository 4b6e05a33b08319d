#!/usr/bin/python3
"""Draws a live fan-out run (benches/fanout.sh) from its JSON summaries, with bars.py.

  python3 benches/fanout_plot.py OUT.svg SUMMARY.json...   # fanout.sh does it with SVG=OUT.svg

Panels: latency (complete arrival − availability at the origin) p50 and p99 per server, the
p99 target (50 ms) dashed; the server's CPU seconds per delivered GB, nginx's dashed as the
target for the others.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bars  # noqa: E402


def main():
    out, files = sys.argv[1], sys.argv[2:]
    runs = [json.load(open(f)) for f in files]
    nginx = next((r for r in runs if r["label"].startswith("nginx")), None)

    def per_gb(r):
        gb = r["window_bytes"] / 1e9
        return r["server_cpu_s"] / gb if r.get("server_cpu_s") is not None and gb > 0 else 0.0

    viewers = runs[0]["viewers"] if runs else 0
    spec = {
        "title": f"Live fan-out, {viewers} viewers, {runs[0]['window_s']:.0f} s window (benches/fanout.sh)" if runs else "",
        "panels": [
            {"title": "latency after availability (ms)", "groups": [
                {"label": "p50", "bars": {r["label"]: r["p50_ms"] for r in runs}},
                {"label": "p99", "bars": {r["label"]: r["p99_ms"] for r in runs}, "target": 50},
            ]},
            {"title": "server CPU s per delivered GB", "groups": [
                {"label": "CPU s/GB", "bars": {r["label"]: per_gb(r) for r in runs},
                 **({"target": per_gb(nginx)} if nginx else {})},
            ]},
        ],
    }
    bars.write(spec, out)


if __name__ == "__main__":
    main()
