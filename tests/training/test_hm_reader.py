"""The H&M reader on a small sample in the real raw layout, written here so CI needs no shared data."""

from __future__ import annotations

import csv
import shutil
import json
from pathlib import Path

import pytest

from tests.support.hm_raw import MISSING_IMAGE, OPTS, write_hm_raw
from training.data import load_dataset, write_dataset
from training.data.hm import HMOptions, build_hm_dataset


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    root = tmp_path_factory.mktemp("hm-raw")
    return root, write_hm_raw(root)


def build(raw_dir: Path, **kw):
    return build_hm_dataset(raw_dir, HMOptions(**{**OPTS, **kw}))


def test_groups_need_min_group_sold_articles_with_images(raw):
    dataset, summary = build(raw[0])
    groups = {e.group for e in dataset.exhibitions}
    # T-shirt: 5 sold < 6; Sandals: 6 sold but one image is missing, so 5 usable
    assert groups == {"Womens Everyday Basics|Vest top", "Divided Basics|Trousers", "Kids Girl|Dress"}
    assert summary.groups == {"train": 3, "test": 0}
    assert summary.missing_images == 1
    assert all(p.id != MISSING_IMAGE for e in dataset.exhibitions for p in e.products)
    _, lower = build(raw[0], min_group=5)
    assert sum(lower.groups.values()) == 5


def test_exhibitions_chunk_groups_and_mix_in_offtopic(raw):
    root, rows = raw
    dataset, summary = build(root)
    vest = [e for e in dataset.exhibitions if e.group.endswith("|Vest top")]
    on_counts = sorted(sum(p.on_topic for p in e.products) for e in vest)
    assert on_counts == [7, 8]  # 15 members (unsold included), 8 on-topic per exhibition -> 2 nearly equal chunks
    seen_on: set[str] = set()
    for e in dataset.exhibitions:
        section, ptype = e.group.split("|")
        on = [p for p in e.products if p.on_topic]
        off = [p for p in e.products if not p.on_topic]
        assert len(e.products) <= 10
        assert len(off) == int(len(on) * 0.25 + 0.5)  # off-topic share 0.2 of the exhibition
        assert all(rows[p.id]["section_name"] == section and rows[p.id]["product_type_name"] == ptype for p in on)
        assert all(rows[p.id]["product_type_name"] != ptype for p in off)
        assert all(p.criteria["sales"] == rows[p.id]["week_sales"] for p in e.products)  # off-topic: real sales too
        assert any(p.criteria["sales"] > 0 for p in on)  # a best image exists
        assert not seen_on & {p.id for p in on}  # a group's members are split, not repeated
        seen_on |= {p.id for p in on}
        assert Path(e.products[0].image).is_absolute() and Path(e.products[0].image).is_file()
        assert e.products[e.best_index("sales")].id not in {p.id for p in off}
    share = sum(summary.offtopic_products.values()) / sum(summary.products.values())
    assert 0.15 < share < 0.25
    assert summary.unsold_on_topic == 5  # Vest top 3 + Trousers 2


def test_sold_only_drops_unsold_members(raw):
    dataset, summary = build(raw[0], include_unsold=False)
    assert summary.unsold_on_topic == 0
    assert all(p.criteria["sales"] > 0 for e in dataset.exhibitions for p in e.products)


def test_topic_attributes(raw):
    dataset, _ = build(raw[0])
    vest = next(e for e in dataset.exhibitions if e.group.endswith("|Vest top"))
    t = vest.topic
    assert t["name"] == "Womens Everyday Basics Vest top"
    assert (t["date"], t["desc"]) == ("2020-09-22", "")
    assert (t["cat1"], t["cat2"], t["cat3"], t["cat4"]) == (
        "Ladieswear",
        "Garment Upper body",
        "Jersey Basic",
        "Jersey Basic",
    )
    kwds = t["kwds"].split(",")
    assert kwds[0] == "Black" and "Solid" in kwds and "Unknown" not in kwds
    assert len(kwds) == len(set(kwds)) <= 5


def test_split_by_group_and_test_frac(raw):
    dataset, summary = build(raw[0], test_frac=0.5)
    train = {e.group for e in dataset.split("train")}
    test = {e.group for e in dataset.split("test")}
    assert train and test and not train & test
    assert len(test) == 2  # round-half-up(3 * 0.5)
    everything, _ = build(raw[0], test_frac=1.0)
    assert not everything.split("train") and len(everything.split("test")) == len(dataset.exhibitions)
    small, _ = build(raw[0], test_frac=0.01)
    assert len({e.group for e in small.split("test")}) == 1  # at least one group when test_frac > 0


def test_deterministic_per_seed(raw, tmp_path):
    def jsonl(seed: int) -> str:
        dataset, _ = build(raw[0], seed=seed, test_frac=0.5)
        return (write_dataset(dataset, tmp_path / str(seed)) / "exhibitions.jsonl").read_text()

    assert jsonl(0) == jsonl(0)
    assert jsonl(0) != jsonl(1)


def test_reader_output_loads_and_keeps_leading_zeros(raw, tmp_path):
    dataset, _ = build(raw[0])
    loaded = load_dataset(write_dataset(dataset, tmp_path / "out"))
    assert [e.id for e in loaded.exhibitions] == [e.id for e in dataset.exhibitions]
    assert all(len(p.id) == 10 and p.id.startswith("0") for e in loaded.exhibitions for p in e.products)
    assert loaded.meta["min_group"] == 6


def test_bad_raw_input_names_file_and_line(raw, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(FileNotFoundError, match="articles.csv"):
        build(bad)
    text = (raw[0] / "articles.csv").read_text().splitlines()
    (bad / "articles.csv").write_text("\n".join([text[0], text[1], "1" + text[2][1:].replace("0", "", 1)]) + "\n")
    (bad / "sales.csv").write_text("article_id,week_sales\n")
    with pytest.raises(ValueError, match=r"articles\.csv:3: field 'article_id': expected 10 digits"):
        build(bad)
    (bad / "articles.csv").write_text("\n".join(text[:3]) + "\n")
    (bad / "sales.csv").write_text("article_id,week_sales\n0000000000,2\n0000000001,many\n")
    with pytest.raises(ValueError, match=r"sales\.csv:3: field 'week_sales'"):
        build(bad)
    (bad / "sales.csv").write_text("article_id,sales\n")
    with pytest.raises(ValueError, match=r"sales\.csv:1: missing columns \['week_sales'\]"):
        build(bad)


def test_cli(raw, tmp_path):
    from typer.testing import CliRunner

    from clik_cli.main import app

    out = tmp_path / "hm-data"
    args = [
        "data",
        "hm",
        str(raw[0]),
        str(out),
        "--min-group",
        "6",
        "--size",
        "10",
        "--test-frac",
        "0.4",
        "--seed",
        "3",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "topic groups: 3 (train 2, test 1)" in result.output
    assert "image missing: 1" in result.output
    header = json.loads((out / "dataset.json").read_text())
    assert header["format"] == "clik-dataset/1" and header["default_criterion"] == "sales"
    assert len(load_dataset(out).split("test")) >= 1
    failed = CliRunner().invoke(app, ["data", "hm", str(tmp_path / "nowhere"), str(out)])
    assert failed.exit_code == 2 and "articles.csv" in failed.output


def test_products_carry_their_family_the_product_code(raw, tmp_path):
    """attrs.family = product_code (colour variants of one garment share it), saved and loaded;
    without the column, article_id // 1000 (its first 7 digits) stands in for it."""
    raw_dir, articles = raw
    ds, _ = build(raw_dir)
    products = [p for ex in ds.exhibitions for p in ex.products]
    assert products and all(p.attrs == {"family": articles[p.id]["product_code"]} for p in products)
    loaded = load_dataset(write_dataset(ds, tmp_path / "out"))
    assert [p.attrs for ex in loaded.exhibitions for p in ex.products] == [p.attrs for p in products]
    bare = tmp_path / "bare"
    shutil.copytree(raw_dir, bare)
    rows = list(csv.DictReader((bare / "articles.csv").open()))
    with (bare / "articles.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, [c for c in rows[0] if c != "product_code"])
        writer.writeheader()
        writer.writerows({k: v for k, v in r.items() if k != "product_code"} for r in rows)
    ds2, _ = build(bare)
    assert all(p.attrs == {"family": str(int(p.id) // 1000)} for ex in ds2.exhibitions for p in ex.products)


def test_korean_topics_are_the_english_template_over_the_tables(raw):
    from training.data.hm_korean import (
        DEPARTMENTS,
        GARMENT_GROUPS,
        GRAPHICAL_APPEARANCES,
        INDEX_GROUPS,
        PRODUCT_GROUPS,
        PRODUCT_TYPES,
        SECTIONS,
        korean_colour,
    )

    english, _ = build(raw[0])
    korean, summary = build(raw[0], language="ko")
    # Same exhibitions, same products in the same order, same groups: only the topic differs.
    assert [(e.id, e.group, e.split, [p.id for p in e.products]) for e in korean.exhibitions] == [
        (e.id, e.group, e.split, [p.id for p in e.products]) for e in english.exhibitions
    ]
    assert korean.meta["language"] == "ko" and english.meta["language"] == "en"
    for en, ko in zip(english.exhibitions, korean.exhibitions):
        section, ptype = en.group.split("|")
        assert ko.topic["name"] == f"{SECTIONS.get(section, section)} {PRODUCT_TYPES[ptype]}"
        for slot, table in (
            ("cat1", INDEX_GROUPS),
            ("cat2", PRODUCT_GROUPS),
            ("cat3", GARMENT_GROUPS),
            ("cat4", DEPARTMENTS),
        ):
            assert ko.topic[slot] == table.get(en.topic[slot], en.topic[slot])
        en_words, ko_words = en.topic["kwds"].split(","), ko.topic["kwds"].split(",")
        assert len(ko_words) == len(en_words)
        # the fixture's colours (Black, White, Dark Blue, Light Pink) are no appearance names
        assert ko_words == [korean_colour(e) or GRAPHICAL_APPEARANCES[e] for e in en_words]
        assert ko.topic["date"] == en.topic["date"] and ko.topic["desc"] == ""
    vest = next(e for e in korean.exhibitions if e.group == "Womens Everyday Basics|Vest top")
    assert vest.topic["name"] == "여성 데일리 베이직 민소매 상의"
    assert vest.topic["cat1"] == "여성의류" and vest.topic["cat3"] == "베이직 저지"
    assert vest.topic["kwds"] == "검정,진한 파랑,흰색,무지,스트라이프"  # English: Black,Dark Blue,White,Solid,Stripe
    # Values the tables lack stay English and are counted, by column.
    kids = next(e for e in korean.exhibitions if e.group == "Kids Girl|Dress")
    assert kids.topic["name"] == "Kids Girl 원피스" and kids.topic["cat4"] == "Girls Dress"
    assert summary.untranslated["section_name: Kids Girl"] >= 1
    assert "department_name: Girls Dress" in summary.untranslated
    assert any("kept in English" in line for line in summary.lines())
    assert not build(raw[0])[1].untranslated  # English keeps every word by definition


def test_korean_topics_are_deterministic(raw, tmp_path):
    for name in ("a", "b"):
        write_dataset(build(raw[0], language="ko")[0], tmp_path / name)
    assert (tmp_path / "a" / "exhibitions.jsonl").read_bytes() == (tmp_path / "b" / "exhibitions.jsonl").read_bytes()
    assert "검정" in (tmp_path / "a" / "exhibitions.jsonl").read_text(encoding="utf-8")


def test_colour_names_compose_from_modifier_and_base():
    from training.data.hm_korean import korean_colour

    assert korean_colour("Dark Blue") == "진한 파랑"
    assert korean_colour("Light Pink") == "연한 분홍"
    assert korean_colour("Other Turquoise") == "기타 청록"
    assert korean_colour("Greenish Khaki") == "카키"  # a whole name wins over the composition
    assert korean_colour("Dark Mauve") is None and korean_colour("Ultra Blue") is None


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="language"):
        HMOptions(language="fr")


def test_cli_writes_korean_topics(raw, tmp_path):
    from typer.testing import CliRunner

    from clik_cli.main import app

    out = tmp_path / "ko"
    result = CliRunner().invoke(
        app,
        [
            "data",
            "hm",
            str(raw[0]),
            str(out),
            "--min-group",
            "6",
            "--size",
            "10",
            "--test-frac",
            "0",
            "--language",
            "ko",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "kept in English" in result.output
    names = {e.topic["name"] for e in load_dataset(out).exhibitions}
    assert "디바이디드 베이직 바지" in names
