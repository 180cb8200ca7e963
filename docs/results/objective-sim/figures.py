"""Offered and carried load per service over time under each objective (seed 1, the unseen
sinusoidal load, the objective planner): the paper's Figs. 5, 6 and 8, as SVG."""
import csv
import os

HERE = os.path.dirname(os.path.abspath(__file__))
W, H, PAD = 720, 260, 40
COLOURS = {"s1": "#1f77b4", "s2": "#d62728"}


def series(path):
    out = {}
    for r in csv.DictReader(open(path)):
        if r["policy"] != "objective" or r["service"] not in COLOURS:
            continue
        s = out.setdefault(r["service"], [])
        s.append((float(r["t_s"]), float(r["offered_rps"]), float(r["carried_rps"])))
    return out


def svg(data, title):
    t_max = max(t for s in data.values() for t, _, _ in s)
    y_max = 25.0
    x = lambda t: PAD + (W - 2 * PAD) * t / t_max
    y = lambda v: H - PAD - (H - 2 * PAD) * min(v, y_max) / y_max
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             'font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{PAD}" y="20">{title}</text>',
             f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="black"/>',
             f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="black"/>',
             f'<text x="{W / 2 - 40}" y="{H - 8}">time (s)</text>',
             f'<text x="4" y="{PAD - 6}">req/s</text>']
    for v in (0, 5, 10, 15, 20, 25):
        parts.append(f'<text x="{PAD - 24}" y="{y(v) + 4}">{v}</text>')
    for t in range(0, int(t_max) + 1, 100):
        parts.append(f'<text x="{x(t) - 10}" y="{H - PAD + 16}">{t}</text>')
    for k, (svc, s) in enumerate(sorted(data.items())):
        c = COLOURS[svc]
        off = " ".join(f"{x(t):.1f},{y(o):.1f}" for t, o, _ in s)
        car = " ".join(f"{x(t):.1f},{y(cc):.1f}" for t, _, cc in s)
        parts.append(f'<polyline points="{off}" fill="none" stroke="{c}" stroke-dasharray="4 3"/>')
        parts.append(f'<polyline points="{car}" fill="none" stroke="{c}" stroke-width="2"/>')
        lx = W - PAD - 230 + k * 115
        parts.append(f'<text x="{lx}" y="34" fill="{c}">{svc}: offered - - carried —</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


for mo in ["mo1", "mo2", "mo3"]:
    path = os.path.join(HERE, f"mesh-two-services-sin-{mo}", "seed-1", "steps.csv")
    data = series(path)
    out = os.path.join(HERE, f"load-{mo}.svg")
    open(out, "w").write(svg(data, f"{mo.upper()}: offered and carried load under the objective "
                                   "planner (sinusoidal load, seed 1)"))
    print(out)
