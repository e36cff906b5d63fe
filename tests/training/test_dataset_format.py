"""clik-dataset/1: round trip, labels and the validation errors a team will meet first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.data import Dataset, Exhibition, Product, load_dataset, write_dataset


def exhibition_obj(ex_id: str = "summer-dresses", **changes) -> dict:
    obj = {
        "id": ex_id,
        "group": "dresses",
        "split": "train",
        "topic": {
            "name": "Summer dresses",
            "date": "2024-06-01",
            "cat1": "Women",
            "cat2": "Dresses",
            "kwds": "linen, floral",
        },
        "products": [
            {"id": "p1", "image": "images/p1.jpg", "criteria": {"ctr": 0.031, "sales": 12}},
            {"id": "p2", "image": "/abs/p2.jpg", "criteria": {"ctr": 0.054}},
            {"id": "p3", "image": "https://cdn.example.com/p3.jpg", "criteria": {"ctr": 0.2}, "on_topic": False},
        ],
    }
    obj.update(changes)
    return obj


def write_raw(root: Path, lines: list, header: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    header = header or {
        "format": "clik-dataset/1",
        "name": "shop",
        "criteria": ["ctr", "sales"],
        "default_criterion": "ctr",
        "source": "our tables",
    }
    (root / "dataset.json").write_text(json.dumps(header))
    (root / "exhibitions.jsonl").write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return root


def test_load_round_trip_and_accessors(tmp_path):
    root = write_raw(tmp_path / "a", [exhibition_obj(), "", exhibition_obj("tees", group="tees", split="test")])
    ds = load_dataset(root / "dataset.json")
    assert ds.data_dir == root and [e.id for e in ds.split("train")] == ["summer-dresses"]
    assert [e.id for e in ds.split("test")] == ["tees"]
    ex = ds.exhibitions[0]
    assert ex.topic["kwds"] == "linen,floral" and ex.topic["desc"] == ""
    assert ex.resolve_image(ex.products[0], root) == str(root / "images/p1.jpg")
    assert ex.resolve_image(ex.products[1], root) == "/abs/p2.jpg"
    assert ds.resolve_image(ex, ex.products[2]) == "https://cdn.example.com/p3.jpg"

    out = write_dataset(ds, tmp_path / "b")
    again = load_dataset(out)
    assert [e.to_json() for e in again.exhibitions] == [e.to_json() for e in ds.exhibitions]
    assert (again.name, again.criteria, again.default_criterion) == ("shop", ["ctr", "sales"], "ctr")
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "exhibitions.jsonl"]  # no temp files left
    with pytest.raises(ValueError, match="unknown split"):
        ds.split("val")


def test_labels_put_offtopic_last_and_best_on_topic():
    ex = Exhibition(
        "e",
        "g",
        "train",
        {"name": "x"},
        [
            Product("a", "a.jpg", {"ctr": 0.1}),
            Product("b", "b.jpg", {"ctr": 0.9}, on_topic=False),  # best seller, wrong topic
            Product("c", "c.jpg", {"ctr": 0.4}),
            Product("d", "d.jpg", {"ctr": -2.0}, on_topic=False),
        ],
    )
    labels = ex.labels("ctr")
    on = np.array([True, False, True, False])
    assert labels[on].tolist() == [0.1, 0.4]
    assert labels[~on].max() < labels[on].min()
    assert ex.best_index("ctr") == 2
    with pytest.raises(ValueError, match="no criterion 'sales'"):
        ex.labels("sales")


def test_missing_date_stays_empty(tmp_path):
    obj = exhibition_obj()
    del obj["topic"]["date"]
    assert load_dataset(write_raw(tmp_path, [obj])).exhibitions[0].topic["date"] == ""


def test_group_defaults_to_id(tmp_path):
    obj = exhibition_obj()
    del obj["group"]
    assert load_dataset(write_raw(tmp_path, [obj])).exhibitions[0].group == "summer-dresses"


def _product_change(**fields):
    obj = exhibition_obj()
    obj["products"][0].update(fields)
    return obj


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"exhibitions\.jsonl:2: not valid JSON"),
        (
            exhibition_obj(),
            r"exhibitions\.jsonl:2: field 'id': duplicate exhibition id 'summer-dresses' \(first on line 1\)",
        ),
        (exhibition_obj("x", split="validation"), r":2: field 'split': expected one of \['train', 'test'\]"),
        (
            exhibition_obj("x", topic={"name": "a", "colour": "red"}),
            r":2: field 'topic': unknown topic attributes \['colour'\]",
        ),
        (exhibition_obj("x", topic={"name": 3}), r":2: field 'topic.name': expected a string"),
        (
            exhibition_obj("x", products=[exhibition_obj()["products"][0]]),
            r":2: field 'products': an exhibition needs at least 2",
        ),
        (exhibition_obj("x", extra=1), r":2: unknown fields \['extra'\]"),
        (
            exhibition_obj(
                "",
            ),
            r":2: field 'id': expected a non-empty string",
        ),
        (
            _product_change(id="x", criteria={"sales": 3}),
            r":2: field 'products\[0\]\.criteria': missing the default criterion 'ctr'",
        ),
        (_product_change(id=7), r":2: field 'products\[0\]\.id': expected a non-empty string"),
        (
            _product_change(criteria={"ctr": float("nan")}),
            r":2: field 'products\[0\]\.criteria\.ctr': expected a finite number",
        ),
        (_product_change(criteria={"ctr": True}), r"products\[0\]\.criteria\.ctr': expected a finite number"),
        (_product_change(criteria={"ctr": 1, "views": 3}), r"products\[0\]\.criteria': \['views'\] not declared"),
        (_product_change(on_topic="no"), r"products\[0\]\.on_topic': expected true or false"),
        (_product_change(image="s3://bucket/p1.jpg"), r"products\[0\]\.image': only file paths and http\(s\) URLs"),
        (_product_change(ontopic=False), r"products\[0\]': unknown fields \['ontopic'\]"),
        (_product_change(id="p2"), r"products\[1\]\.id': duplicate product id 'p2'"),
    ],
)
def test_bad_lines_name_line_and_field(tmp_path, line, message):
    obj = exhibition_obj("first")
    root = write_raw(tmp_path, [exhibition_obj(), line] if "duplicate exhibition" in message else [obj, line])
    with pytest.raises(ValueError, match=message) as info:
        load_dataset(root)
    assert str(root / "exhibitions.jsonl") in str(info.value)


def test_no_on_topic_product(tmp_path):
    obj = exhibition_obj()
    for p in obj["products"]:
        p["on_topic"] = False
    with pytest.raises(ValueError, match=r":1: field 'products': no on-topic product"):
        load_dataset(write_raw(tmp_path, [obj]))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"format": "clik-dataset/2"}, r"dataset\.json: field 'format': expected 'clik-dataset/1'"),
        ({"default_criterion": "views"}, r"field 'default_criterion': 'views' is not one of"),
        ({"criteria": []}, r"field 'criteria': expected a non-empty list"),
        ({"owner": "me"}, r"unknown fields \['owner'\]"),
    ],
)
def test_bad_header(tmp_path, header, message):
    full = {"format": "clik-dataset/1", "name": "shop", "criteria": ["ctr"], "default_criterion": "ctr", "source": ""}
    with pytest.raises(ValueError, match=message):
        load_dataset(write_raw(tmp_path, [exhibition_obj()], {**full, **header}))


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="exhibitions.jsonl"):
        load_dataset(tmp_path)


def test_write_validates_first(tmp_path):
    ex = Exhibition("e", "g", "train", {"name": "x"}, [Product("a", "a.jpg", {"ctr": 1.0})])
    with pytest.raises(ValueError, match=r"exhibitions\.jsonl:1: field 'products': an exhibition needs at least 2"):
        write_dataset(Dataset("d", ["ctr"], "ctr", "", [ex]), tmp_path / "out")
    assert not (tmp_path / "out").exists()
