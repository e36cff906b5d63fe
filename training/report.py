"""Reports from evaluation results: the paper's Table 2 / Table 3 shapes, a plot, a contact sheet."""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

COLUMNS = ("MRR", "Top1-Top1", "Top3-Top1", "Top5-Top1", "offtopic@1", "offtopic@10")
METHOD_NAMES = {"clik": "CLIK", "triplet": "Triplet", "pairwise": "Pairwise", "pointwise": "Pointwise"}
QUERY_NAMES = {"group": "Group Query", "virtual": "Virtual Image", "topic": "Topic"}


def load_results(paths: list[str | Path]) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def _row(name: str, metrics: dict, ci: dict | None = None) -> str:
    cells = []
    for col in COLUMNS:
        value = f"{metrics[col]:.4f}"
        if ci and col in ci:
            value += f" [{ci[col][0]:.3f}, {ci[col][1]:.3f}]"
        cells.append(value)
    return f"| {name} | " + " | ".join(cells) + " |"


def _table(rows: list[tuple[str, dict, dict | None]]) -> list[str]:
    lines = ["| | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [_row(*r) for r in rows]
    return lines


def markdown(results: list[dict]) -> str:
    if not results:
        raise ValueError("no results to report")
    first = results[0]
    by_method = {r["method"]: r for r in results if r["method"] != "clik" or r.get("query") == "group"}
    lines = [
        f"# Evaluation: {first['data']} ({first['split']} split, K = {first['k']}, criterion {first['criterion']})",
        "",
        f"{first['groups']} exhibitions; off-topic share {first['offtopic_share']:.3f}. "
        "Values with bootstrap 95% intervals over exhibitions. Random is the exact expectation.",
        "",
        "## Comparison with baselines (paper Table 2 shape)",
        "",
    ]
    rows = [(METHOD_NAMES[m], by_method[m]["metrics"], by_method[m].get("ci95")) for m in METHOD_NAMES if m in by_method]
    rows.append(("Random", first["random"], None))
    lines += _table(rows)
    queries = {r["query"]: r for r in results if r["method"] == "clik" and r.get("query")}
    if queries:
        lines += ["", "## Query usage (paper Table 3 shape)", ""]
        rows = [(QUERY_NAMES[q], queries[q]["metrics"], queries[q].get("ci95")) for q in QUERY_NAMES if q in queries]
        rows.append(("Random", first["random"], None))
        lines += _table(rows)
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [METHOD_NAMES[r["method"]] + (f" ({r['query']})" if r["method"] == "clik" else "") for r in results] + ["Random"]
    metrics = ("MRR", "Top1-Top1", "offtopic@10")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4))
    for ax, metric in zip(axes, metrics):
        values = [r["metrics"][metric] for r in results] + [results[0]["random"][metric]]
        lows = [v - r["ci95"][metric][0] if r.get("ci95") else 0 for v, r in zip(values, results)] + [0]
        highs = [r["ci95"][metric][1] - v if r.get("ci95") else 0 for v, r in zip(values, results)] + [0]
        ax.bar(range(len(values)), values, yerr=[lows, highs], capsize=3, color=["#3465a4"] * len(results) + ["#888888"])
        ax.set_xticks(range(len(values)), names, rotation=40, ha="right", fontsize=8)
        ax.set_title(metric)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def contact_sheet(result: dict, exhibition_id: str | None, path: str | Path, n: int = 10, thumb: int = 96) -> str:
    """Top n and bottom n images of one exhibition with their scores (paper Figure 5).

    Off-topic products get a red frame, the true best a green one.
    """
    groups = result["per_group"]
    group = next((g for g in groups if g["exhibition_id"] == exhibition_id), None) if exhibition_id else groups[0]
    if group is None:
        raise ValueError(f"exhibition {exhibition_id!r} is not in the result")
    ranking = group["ranking"]
    best_label = max(item["label"] for item in ranking)
    rows = [("best-ranked", ranking[:n]), ("worst-ranked", ranking[-n:])]
    pad, label_h = 6, 16
    sheet = Image.new("RGB", (n * (thumb + pad) + pad + 90, 2 * (thumb + label_h + pad) + pad), "white")
    pen = ImageDraw.Draw(sheet)
    for r, (title, items) in enumerate(rows):
        y = pad + r * (thumb + label_h + pad)
        pen.text((4, y + thumb // 2), title, fill="black")
        for c, item in enumerate(items):
            x = 90 + pad + c * (thumb + pad)
            try:
                image = ImageOps.pad(Image.open(item["image"]).convert("RGB"), (thumb, thumb), color="white")
            except OSError:
                image = Image.new("RGB", (thumb, thumb), "grey")
            frame = "red" if not item["on_topic"] else ("green" if item["label"] == best_label else None)
            if frame:
                image = ImageOps.expand(image.resize((thumb - 6, thumb - 6)), border=3, fill=frame)
            sheet.paste(image, (x, y))
            pen.text((x + 2, y + thumb + 2), f"{item['score']:+.3f}", fill="black")
    sheet.save(path)
    return group["exhibition_id"]


def write_report(results: list[dict], out_dir: str | Path, exhibition_id: str | None = None) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(results)
    plot(results, out_dir / "metrics.png")
    sheets = []
    for r in results:
        name = f"contact-{r['method']}{'-' + r['query'] if r['method'] == 'clik' else ''}.png"
        shown = contact_sheet(r, exhibition_id, out_dir / name)
        sheets.append(f"![{name}]({name})")
    text += f"\n![metrics](metrics.png)\n\n## Contact sheets: exhibition {shown}\n\n" + "\n\n".join(sheets) + "\n"
    (out_dir / "report.md").write_text(text)
    return out_dir / "report.md"
