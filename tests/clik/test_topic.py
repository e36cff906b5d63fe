import datetime as dt

import pytest

from clik.topic import normalize_topic, topic_key, topic_segments


def test_missing_keys_are_empty_and_date_defaults_to_today():
    topic = normalize_topic({"name": "Men trousers"})
    assert topic["desc"] == "" and topic["cat1"] == "" and topic["kwds"] == ""
    assert topic["date"] == dt.date.today().isoformat()


def test_segments_follow_the_paper_layout():
    attrs = {"name": "주문폭주 가을코디", "date": "2021-08-30", "cat1": "패션", "cat2": "여성의류",
             "cat3": "니트", "kwds": "가을신상,데일리룩,데이트룩"}
    assert topic_segments(attrs) == ["주문폭주 가을코디", "2021-08-30", "패션 > 여성의류", "가을신상, 데일리룩, 데이트룩"]


def test_normalisation_makes_spellings_share_a_key():
    a = {"name": "  Cropped  sweatshirt ", "kwds": "crop, sweat", "date": "2022-01-01"}
    b = {"name": "Cropped sweatshirt", "kwds": "crop,sweat", "date": "2022-01-01"}
    full_width = {"name": "Ｃｒｏｐｐｅｄ sweatshirt", "kwds": "crop,sweat", "date": "2022-01-01"}
    assert topic_key(a) == topic_key(b) == topic_key(full_width)
    assert topic_key(a) != topic_key({**b, "name": "Cropped hoodie"})


def test_unknown_key_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="titel"):
        normalize_topic({"titel": "typo"})


def test_training_augmentation_only_adds_deeper_categories():
    import random

    attrs = {"name": "t", "date": "2021-01-01", "cat1": "a", "cat2": "b", "cat3": "c", "cat4": "d", "kwds": "x,y,z"}
    seen = {topic_segments(attrs, rng=random.Random(seed))[2] for seed in range(40)}
    assert seen == {"a > b", "a > b > c", "a > b > c > d"}
