import datetime as dt

import pytest

from clik.topic import normalize_topic, topic_key, topic_segments


def test_missing_keys_are_empty_and_date_defaults_to_today():
    topic = normalize_topic({"name": "Men trousers"})
    assert topic["desc"] == "" and topic["cat1"] == "" and topic["kwds"] == ""
    assert topic["date"] == dt.date.today().isoformat()


def test_segments_follow_the_paper_layout():
    attrs = {
        "name": "주문폭주 가을코디",
        "date": "2021-08-30",
        "cat1": "패션",
        "cat2": "여성의류",
        "cat3": "니트",
        "kwds": "가을신상,데일리룩,데이트룩",
    }
    assert topic_segments(attrs) == [
        "주문폭주 가을코디",
        "2021-08-30",
        "패션 > 여성의류",
        "가을신상, 데일리룩, 데이트룩",
    ]


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


def test_korean_keyword_lists_split_on_their_separators_not_on_spaces():
    from clik.topic import split_keywords

    same = [
        "가을신상,데일리룩,데이트룩",
        "가을신상, 데일리룩 ,데이트룩",
        "#가을신상 #데일리룩 #데이트룩",
        "가을신상\n데일리룩\n데이트룩",
        "가을신상;데일리룩|데이트룩",
        "가을신상、데일리룩，데이트룩",
        "가을신상,가을신상,데일리룩,,데이트룩",
    ]
    for spelling in same:
        assert split_keywords(spelling) == ["가을신상", "데일리룩", "데이트룩"], spelling
    # A keyword may have several words, and "·" joins the parts of one keyword.
    assert split_keywords("가을 신상,cropped sweatshirt,가을·겨울") == ["가을 신상", "cropped sweatshirt", "가을·겨울"]


def test_korean_spellings_of_one_topic_share_a_key():
    import unicodedata

    base = {
        "name": "주문폭주 가을코디 매일매일 업뎃",
        "date": "2021-08-30",
        "cat1": "패션",
        "cat2": "여성의류",
        "kwds": "가을신상,데일리룩,데이트룩",
    }
    variants = [
        {**base, "name": unicodedata.normalize("NFD", base["name"])},  # jamo typed one by one
        {**base, "name": "주문폭주\u200b 가을코디\u00a0 매일매일\t업뎃\ufeff"},  # invisible and odd spaces
        {**base, "date": "2021.08.30"},
        {**base, "date": "2021. 8. 30."},
        {**base, "date": "2021년 8월 30일"},
        {**base, "date": "2021/8/30"},
        {**base, "date": "20210830"},
        {**base, "date": "2021-08-30T09:30:00+09:00"},
        {**base, "kwds": "#가을신상 #데일리룩 #데이트룩"},
        {**base, "cat2": "여성의류 "},
    ]
    for variant in variants:
        assert topic_key(variant) == topic_key(base), variant
    assert topic_key({**base, "date": "2021-08-31"}) != topic_key(base)
    assert topic_key({**base, "kwds": "가을신상,데이트룩"}) != topic_key(base)


def test_dates_that_are_not_dates_stay_text_and_impossible_ones_are_refused():
    assert normalize_topic({"name": "x", "date": "2021 F/W"})["date"] == "2021 F/W"
    assert normalize_topic({"name": "x", "date": "추석 연휴"})["date"] == "추석 연휴"
    with pytest.raises(ValueError, match="2021-13-45"):
        normalize_topic({"name": "x", "date": "2021-13-45"})
    with pytest.raises(ValueError, match="2021년 2월 30일"):
        normalize_topic({"name": "x", "date": "2021년 2월 30일"})


def test_normalisation_is_idempotent():
    attrs = {"name": "Ｃｒｏｐ  주문폭주", "date": "2021. 8. 30.", "cat1": "패션", "kwds": "#a #b\nc"}
    once = normalize_topic(attrs)
    assert normalize_topic(once) == once
