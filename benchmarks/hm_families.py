"""Copy a clik-dataset folder written before the H&M reader set attrs.family, adding
attrs.family = product_code from the raw articles.csv (what the reader writes now).

    python benchmarks/hm_families.py runs/hm-splits/split1/data /tmp/split1 ../shared/data/hm/articles.csv
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def main() -> None:
    src, dst, articles = (Path(a) for a in sys.argv[1:4])
    code = {r["article_id"]: r["product_code"] for r in csv.DictReader(articles.open())}
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "dataset.json").write_text((src / "dataset.json").read_text())
    with (dst / "exhibitions.jsonl").open("w") as out:
        for line in (src / "exhibitions.jsonl").open():
            ex = json.loads(line)
            for p in ex["products"]:
                if p["id"] in code:
                    p["attrs"] = {**p.get("attrs", {}), "family": code[p["id"]]}
            out.write(json.dumps(ex, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
