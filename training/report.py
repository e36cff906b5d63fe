"""Reports from evaluation results: the paper's Table 2 / Table 3 shapes, a plot, a contact sheet."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

COLUMNS = ("MRR", "Top1-Top1", "Top3-Top1", "Top5-Top1", "offtopic@1", "offtopic@10")
FLAG_COLUMNS = ("offtopic_auc", "flag_precision", "flag_recall")
METHOD_NAMES = {
    "clik": "CLIK",
    "triplet": "Triplet",
    "pairwise": "Pairwise",
    "pointwise": "Pointwise",
    "probe": "Linear probe",
}
QUERY_NAMES = {"group": "Group Query", "virtual": "Virtual Image", "topic": "Topic"}


def load_results(paths: list[str | Path]) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def _row(name: str, metrics: dict, ci: dict | None = None, columns=COLUMNS) -> str:
    cells = []
    for col in columns:
        value = f"{metrics[col]:.4f}"
        if ci and col in ci:
            value += f" [{ci[col][0]:.3f}, {ci[col][1]:.3f}]"
        cells.append(value)
    return f"| {name} | " + " | ".join(cells) + " |"


def _table(rows: list[tuple[str, dict, dict | None]], columns=COLUMNS) -> list[str]:
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [_row(*r, columns=columns) for r in rows]
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
    rows = [
        (METHOD_NAMES[m], by_method[m]["metrics"], by_method[m].get("ci95")) for m in METHOD_NAMES if m in by_method
    ]
    rows.append(("Random", first["random"], None))
    lines += _table(rows)
    queries = {r["query"]: r for r in results if r["method"] == "clik" and r.get("query")}
    if queries:
        lines += ["", "## Query usage (paper Table 3 shape)", ""]
        rows = [(QUERY_NAMES[q], queries[q]["metrics"], queries[q].get("ci95")) for q in QUERY_NAMES if q in queries]
        rows.append(("Random", first["random"], None))
        lines += _table(rows)
    flagged = [r for r in results if all(c in r["metrics"] for c in FLAG_COLUMNS)]
    if flagged:
        lines += [
            "",
            "## Topic fit: the off-topic flag, and the ranking without it",
            "",
            "Scores above are the service's (appeal + context, flagged products last). The flag's "
            "AUC (of topic_fit), precision and recall pooled over products:",
            "",
        ]
        lines += _table([(_name(r), r["metrics"], r.get("ci95")) for r in flagged], FLAG_COLUMNS)
        lines += ["", "CLIK's appeal alone (no topic fit):", ""]
        lines += _table([(_name(r) + ", appeal alone", r["appeal_only"], None) for r in flagged if "appeal_only" in r])
    return "\n".join(lines) + "\n"


def _name(r: dict) -> str:
    return METHOD_NAMES[r["method"]] + (
        f" ({QUERY_NAMES[r['query']]})" if r["method"] == "clik" and r.get("query") else ""
    )


def plot(results: list[dict], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [METHOD_NAMES[r["method"]] + (f" ({r['query']})" if r["method"] == "clik" else "") for r in results] + [
        "Random"
    ]
    metrics = ("MRR", "Top1-Top1", "offtopic@10")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4))
    for ax, metric in zip(axes, metrics):
        values = [r["metrics"][metric] for r in results] + [results[0]["random"][metric]]
        lows = [v - r["ci95"][metric][0] if r.get("ci95") else 0 for v, r in zip(values, results)] + [0]
        highs = [r["ci95"][metric][1] - v if r.get("ci95") else 0 for v, r in zip(values, results)] + [0]
        ax.bar(
            range(len(values)), values, yerr=[lows, highs], capsize=3, color=["#3465a4"] * len(results) + ["#888888"]
        )
        ax.set_xticks(range(len(values)), names, rotation=40, ha="right", fontsize=8)
        ax.set_title(metric)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def contact_sheet(
    result: dict, exhibition_ids: list[str] | None, path: str | Path, n: int = 8, count: int = 4, thumb: int = 96
) -> list[str]:
    """For several exhibitions (`count`, or the ones named), the best- and worst-ranked n images
    with their scores under the exhibition's topic (paper Figure 5). Red frame: an off-topic
    product; green frame: the true best; "off?" under a score: flagged off-topic by the service."""
    groups = result["per_group"]
    if exhibition_ids:
        chosen = [g for g in groups if g["exhibition_id"] in set(exhibition_ids)]
        missing = set(exhibition_ids) - {g["exhibition_id"] for g in chosen}
        if missing:
            raise ValueError(f"exhibition(s) {sorted(missing)} not in the result")
    else:
        chosen = groups[:: max(1, len(groups) // count)][:count]
    pad, label_h, title_h, left = 6, 16, 18, 90
    block_h = title_h + 2 * (thumb + label_h + pad)
    sheet = Image.new("RGB", (n * (thumb + pad) + pad + left, len(chosen) * block_h + pad), "white")
    pen = ImageDraw.Draw(sheet)
    for b, group in enumerate(chosen):
        top = pad + b * block_h
        topic = group.get("topic") or {}
        pen.text((4, top), f"{topic.get('name', '')}  ({group['exhibition_id']})", fill="black")
        ranking = group["ranking"]
        best_label = max(item["label"] for item in ranking)
        for r, (title, items) in enumerate([("best-ranked", ranking[:n]), ("worst-ranked", ranking[-n:])]):
            y = top + title_h + r * (thumb + label_h + pad)
            pen.text((4, y + thumb // 2), title, fill="black")
            for c, item in enumerate(items):
                x = left + pad + c * (thumb + pad)
                try:
                    image = ImageOps.pad(Image.open(item["image"]).convert("RGB"), (thumb, thumb), color="white")
                except OSError:
                    image = Image.new("RGB", (thumb, thumb), "grey")
                frame = "red" if not item["on_topic"] else ("green" if item["label"] == best_label else None)
                if frame:
                    image = ImageOps.expand(image.resize((thumb - 6, thumb - 6)), border=3, fill=frame)
                sheet.paste(image, (x, y))
                flag = " off?" if item.get("off_topic_flag") else ""
                pen.text((x + 2, y + thumb + 2), f"{item['score']:+.3f}{flag}", fill="black")
    sheet.save(path)
    return [g["exhibition_id"] for g in chosen]


def write_report(results: list[dict], out_dir: str | Path, exhibition_id: str | None = None) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(results)
    plot(results, out_dir / "metrics.png")
    sheets = []
    for r in results:
        name = f"contact-{r['method']}{'-' + r['query'] if r['method'] == 'clik' else ''}.png"
        shown = contact_sheet(r, [exhibition_id] if exhibition_id else None, out_dir / name)
        sheets.append(f"![{name}]({name})")
    text += (
        f"\n![metrics](metrics.png)\n\n## Contact sheets: exhibitions {', '.join(shown)}\n\n"
        'Red frame: off-topic product; green: the true best; "off?": flagged off-topic.\n\n'
        + "\n\n".join(sheets)
        + "\n"
    )
    (out_dir / "report.md").write_text(text)
    return out_dir / "report.md"
