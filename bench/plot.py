#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Description: bar chart of one metric by profile and server, from run.py or http_bench.py JSON.
"""Usage: plot.py RESULTS.json [-o chart.png] [--metric server_cpu_us_per_rt] [--ratio]

http_bench.py's samples have server_cpu_us_per_req, req_per_s and mb_per_s instead; --ratio
divides every bar by the median of the profile's reference server (meta "reference_by_profile",
else meta "reference"), so profiles of very different scale share one chart.

Bars are medians over rounds; the whiskers span the min..max of the rounds. Uses matplotlib
when it can be imported (Debian: apt-get install python3-matplotlib); without it, writes an SVG
next to the requested file instead (same content, no dependency)."""
import argparse
import json
import os
import statistics
import subprocess
import sys
from collections import OrderedDict


def collect(data, metric):
    """Returns (profiles, servers, {(profile, server): [values]}) in first-seen order."""
    profiles, servers, clean, noisy = OrderedDict(), OrderedDict(), {}, {}
    for s in data["samples"]:
        v = s.get(metric)
        profiles[s["profile"]] = None
        servers[s["server"]] = None
        if isinstance(v, (int, float)):
            (noisy if s.get("noisy") else clean).setdefault((s["profile"], s["server"]), []).append(v)
    # Like run.py's table: noisy samples only count where a cell has nothing else.
    values = {k: clean.get(k) or noisy[k] for k in set(clean) | set(noisy)}
    return list(profiles), list(servers), values


def as_ratios(data, profiles, values):
    """values divided by the median of each profile's reference server (that one becomes 1)."""
    meta = data.get("meta", {})
    refs = meta.get("reference_by_profile") or {p: meta.get("reference") for p in profiles}
    out = {}
    for (profile, server), vals in values.items():
        ref = values.get((profile, refs.get(profile)))
        if ref and statistics.median(ref):
            out[(profile, server)] = [v / statistics.median(ref) for v in vals]
    return out


def plot_matplotlib(path, profiles, servers, values, title, ylabel):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / max(1, len(servers))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(profiles) * max(1, len(servers)) / 3), 4.5))
    for i, server in enumerate(servers):
        xs, ys, lo, hi = [], [], [], []
        for j, profile in enumerate(profiles):
            vals = values.get((profile, server))
            if not vals:
                continue
            m = statistics.median(vals)
            xs.append(j + (i - (len(servers) - 1) / 2) * width)
            ys.append(m)
            lo.append(m - min(vals))
            hi.append(max(vals) - m)
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=server)
    ax.set_xticks(range(len(profiles)))
    ax.set_xticklabels(profiles, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_svg(path, profiles, servers, values, title, ylabel):
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3"]
    w, h, left, bottom, top = max(160 * len(profiles) + 120, 120 * len(servers) + 120), 420, 70, 90, 40
    vmax = max((max(v) for v in values.values()), default=1.0) * 1.1 or 1.0
    plot_h = h - bottom - top
    group_w = (w - left - 20) / max(1, len(profiles))
    bar_w = group_w * 0.8 / max(1, len(servers))

    def y(v):
        return top + plot_h - v / vmax * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="11">',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<text x="15" y="{top + plot_h / 2}" transform="rotate(-90 15 {top + plot_h / 2})" '
           f'text-anchor="middle">{ylabel}</text>']
    for k in range(6):
        v = vmax * k / 5
        out.append(f'<line x1="{left}" x2="{w - 20}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   f'stroke="#ddd"/><text x="{left - 5}" y="{y(v) + 4:.1f}" '
                   f'text-anchor="end">{v:.2f}</text>')
    for j, profile in enumerate(profiles):
        gx = left + j * group_w + group_w * 0.1
        for i, server in enumerate(servers):
            vals = values.get((profile, server))
            if not vals:
                continue
            m = statistics.median(vals)
            x = gx + i * bar_w
            out.append(f'<rect x="{x:.1f}" y="{y(m):.1f}" width="{bar_w - 1:.1f}" '
                       f'height="{top + plot_h - y(m):.1f}" fill="{colors[i % len(colors)]}">'
                       f'<title>{server} {profile}: {m:.3f}</title></rect>')
            cx = x + (bar_w - 1) / 2
            out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(min(vals)):.1f}" '
                       f'y2="{y(max(vals)):.1f}" stroke="#333"/>')
        out.append(f'<text x="{left + (j + 0.5) * group_w:.1f}" y="{top + plot_h + 18}" '
                   f'text-anchor="middle">{profile}</text>')
    for i, server in enumerate(servers):
        lx = left + i * 120
        out.append(f'<rect x="{lx}" y="{h - 30}" width="12" height="12" '
                   f'fill="{colors[i % len(colors)]}"/><text x="{lx + 16}" y="{h - 20}">{server}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="JSON written by run.py --json-out")
    ap.add_argument("-o", "--output", default="bench.png")
    ap.add_argument("--metric", help="sample field to plot (e.g. rt_per_s, p99_us; "
                    "default server_cpu_us_per_rt, or server_cpu_us_per_req for http_bench.py)")
    ap.add_argument("--ratio", action="store_true",
                    help="plot each value divided by the profile's reference server's median")
    args = ap.parse_args()
    with open(args.results) as f:
        data = json.load(f)
    if not args.metric:
        http = any("server_cpu_us_per_req" in s for s in data["samples"])
        args.metric = "server_cpu_us_per_req" if http else "server_cpu_us_per_rt"
    profiles, servers, values = collect(data, args.metric)
    if args.ratio:
        values = as_ratios(data, profiles, values)
    if not values:
        print(f"plot.py: no numeric '{args.metric}' in {args.results}", file=sys.stderr)
        return 1
    labels = {"server_cpu_us_per_rt": "server CPU µs per round trip",
              "rt_per_s": "round trips per second", "p99_us": "p99 latency (µs)",
              "p50_us": "p50 latency (µs)",
              "server_cpu_us_per_req": "server CPU µs per request (proxy: per round trip)",
              "req_per_s": "requests per second", "mb_per_s": "MB/s (10^6 bytes)"}
    ylabel = labels.get(args.metric, args.metric)
    if args.ratio:
        ylabel += " ÷ reference"
    title = f"{ylabel} (median of {data.get('meta', {}).get('rounds', '?')} rounds)"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        # A pyenv/venv python3 may lack the Debian package that /usr/bin/python3 has.
        system_python = "/usr/bin/python3"
        if (os.path.realpath(sys.executable) != os.path.realpath(system_python)
                and os.access(system_python, os.X_OK)
                and subprocess.run([system_python, "-c", "import matplotlib"],
                                   capture_output=True).returncode == 0):
            os.execv(system_python, [system_python, os.path.abspath(__file__)] + sys.argv[1:])
        svg = args.output.rsplit(".", 1)[0] + ".svg"
        plot_svg(svg, profiles, servers, values, title, ylabel)
        print(f"plot.py: matplotlib not importable (apt-get install python3-matplotlib); "
              f"wrote {svg} instead")
        return 0
    plot_matplotlib(args.output, profiles, servers, values, title, ylabel)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
