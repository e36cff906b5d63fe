"""A tiny raw H&M layout (articles.csv, sales.csv, JPEGs) for the reader's and the experiment's tests."""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

COLUMNS = [
    "article_id",
    "product_code",
    "prod_name",
    "product_type_name",
    "product_group_name",
    "graphical_appearance_name",
    "colour_group_name",
    "perceived_colour_value_name",
    "perceived_colour_master_name",
    "department_name",
    "index_name",
    "index_group_name",
    "section_name",
    "garment_group_name",
    "detail_desc",
]
# (section, product type, product group, index group, garment group, department, sold, unsold)
GROUPS = [
    ("Womens Everyday Basics", "Vest top", "Garment Upper body", "Ladieswear", "Jersey Basic", "Jersey Basic", 12, 3),
    ("Divided Basics", "Trousers", "Garment Lower body", "Divided", "Trousers", "Divided Trousers", 8, 2),
    ("Kids Girl", "Dress", "Garment Full body", "Baby/Children", "Dresses Ladies", "Girls Dress", 7, 0),
    ("Men Underwear", "T-shirt", "Garment Upper body", "Menswear", "Jersey Fancy", "Men Tops", 5, 4),  # too few sold
    ("Womens Shoes", "Sandals", "Shoes", "Ladieswear", "Shoes", "Ladies Shoes", 6, 0),  # 6 sold, one image missing
]
OPTS = dict(min_group=6, size=10, offtopic=0.2, test_frac=0.0, seed=0)
MISSING_IMAGE = "0400000000"  # first Sandals article: no JPEG on disk


def write_hm_raw(root: Path) -> dict[str, dict]:
    """articles.csv, sales.csv and tiny JPEGs; returns the rows by article id."""
    (root / "images").mkdir(parents=True)
    rows: dict[str, dict] = {}
    for g, (section, ptype, pgroup, igroup, garment, dept, sold, unsold) in enumerate(GROUPS):
        for i in range(sold + unsold):
            aid = f"0{g}{i:08d}"  # 10 digits, leading zero as in the real data
            colour = ["Black", "Black", "White", "Dark Blue", "Light Pink"][i % 5]
            rows[aid] = {
                "article_id": aid,
                "product_code": aid[1:7],
                "prod_name": f"{ptype} {i}",
                "product_type_name": ptype,
                "product_group_name": pgroup,
                "graphical_appearance_name": ["Solid", "Solid", "Stripe", "Unknown"][i % 4],
                "colour_group_name": colour,
                "perceived_colour_value_name": "Dark",
                "perceived_colour_master_name": colour,
                "department_name": dept if i else "Odd Dept",
                "index_name": igroup,
                "index_group_name": igroup,
                "section_name": section,
                "garment_group_name": garment,
                "detail_desc": "A product, with a comma.",
                "week_sales": (i + 1) * 3 if i < sold else 0,
            }
            if aid != MISSING_IMAGE:
                Image.new("RGB", (8, 12), (40 * g, 7 * i, 128)).save(root / "images" / f"{aid}.jpg")
    with open(root / "articles.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows.values())
    with open(root / "sales.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["article_id", "week_sales"])
        writer.writerows((a, r["week_sales"]) for a, r in rows.items())
    return rows
