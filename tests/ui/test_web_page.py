"""The /ui web page in a real headless Chromium (Debian's package) driven by playwright: the list
of exhibitions with their representative image, then one exhibition's ranking in API order with
pending and failed products marked."""

from __future__ import annotations

import os
import shutil

import httpx
import pytest

from clik_cli.single_machine import fetch_limits, inprocess_queue, serve_in_thread
from tests.support.api_server import free_port
from tests.support.bundles import tiny_bundle
from tests.support.images import jpeg_bytes
from worker.encode import EncoderCache, encode_products

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CLIK_REQUIRE_BROWSER"):
            pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium")
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it)")
    from api.app import create_app
    from api.settings import ApiSettings
    from indexer.config import open_store

    tmp = tmp_path_factory.mktemp("ui")
    images = tmp / "images"
    images.mkdir()
    for i in range(6):
        (images / f"p{i}.jpg").write_bytes(jpeg_bytes(300 + i))
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    info = tiny_bundle(tmp / "bundle", seed=3)
    store = open_store(str(tmp / "store"))
    store.register_version(info.version, info.embed_dim, bundle_uri=str(info.path))
    store.activate(info.version)
    for i in range(6):
        store.put_product(f"p{i}", str(images / f"p{i}.jpg"))
    store.put_product("broken", str(images / "broken.jpg"))
    store.put_product("later", str(images / "p0.jpg"))  # registered, never encoded: pending
    report = encode_products(
        store, [f"p{i}" for i in range(6)] + ["broken"], EncoderCache("cpu", 8), fetch_limits(store, [images])
    )
    assert len(report.encoded) == 6 and "broken" in report.failed
    store.put_exhibition(
        "linen",
        {"name": "Summer linen", "cat1": "Women", "kwds": "linen,summer"},
        ["p0", "p1", "p2", "p3", "broken", "later"],
    )
    store.put_exhibition("knit", {"name": "Winter knits"}, ["p3", "p4", "p5"])
    # Six near-identical packshots and one plain green square: the square is the outlier.
    from PIL import Image, ImageEnhance

    base = Image.open(images / "p0.jpg")
    for i in range(6):
        ImageEnhance.Brightness(base).enhance(0.9 + 0.04 * i).save(images / f"m{i}.jpg")
        store.put_product(f"m{i}", str(images / f"m{i}.jpg"))
    Image.new("RGB", (64, 48), (20, 200, 40)).save(images / "green.jpg")
    store.put_product("green", str(images / "green.jpg"))
    report = encode_products(
        store, [f"m{i}" for i in range(6)] + ["green"], EncoderCache("cpu", 8), fetch_limits(store, [images])
    )
    assert len(report.encoded) == 7
    store.put_exhibition("mixed", {"name": "Linen shirts"}, [f"m{i}" for i in range(6)] + ["green"])

    queue = inprocess_queue(store, roots=(images,))
    settings = ApiSettings(api_keys=["k"], file_roots=[str(images)])
    server = serve_in_thread(create_app(settings, store=store, encode_queue=queue), "127.0.0.1", free_port())
    yield server.url, info.version
    server.stop()
    queue.close()
    store.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def test_list_shows_each_exhibition_with_its_representative_image(site, browser):
    url, version = site
    page = browser.new_page()
    page.goto(f"{url}/ui")
    page.wait_for_selector("[data-testid=exhibitions] .card[data-representative]")
    page.wait_for_function("document.querySelectorAll('.card[data-representative]').length === 3")
    cards = page.locator(".card")
    names = sorted(cards.nth(i).locator(".name").inner_text() for i in range(cards.count()))
    assert names == ["Linen shirts", "Summer linen", "Winter knits"]
    for ex_id in ("linen", "knit"):
        expected = httpx.get(f"{url}/exhibitions/{ex_id}/representative").json()["items"][0]["product_id"]
        card = page.locator(f".card[data-exhibition-id={ex_id}]")
        assert card.get_attribute("data-representative") == expected
        page.wait_for_function(f"document.querySelector('.card[data-exhibition-id={ex_id}] img').naturalWidth > 0")
    page.wait_for_function(f"document.querySelector('[data-testid=model-version]').dataset.version === '{version}'")
    page.close()


def test_exhibition_page_shows_the_ranking_in_order_with_pending_and_failed(site, browser):
    url, _ = site
    expected = httpx.get(f"{url}/exhibitions/linen/ranking", params={"limit": 100}).json()
    order = [item["product_id"] for item in expected["items"]]
    assert sorted(order) == ["p0", "p1", "p2", "p3"]

    page = browser.new_page()
    page.goto(f"{url}/ui")
    page.locator(".card[data-exhibition-id=linen]").click()
    page.wait_for_function("document.querySelectorAll('[data-testid=ranking] figure').length === 4")
    tiles = page.locator("[data-testid=ranking] figure")
    assert [tiles.nth(i).get_attribute("data-product-id") for i in range(4)] == order
    assert [tiles.nth(i).get_attribute("data-rank") for i in range(4)] == ["1", "2", "3", "4"]
    shown_scores = [float(tiles.nth(i).locator(".score").inner_text()) for i in range(4)]
    assert shown_scores == [round(item["score"], 4) for item in expected["items"]]
    assert page.locator("#topic-name").inner_text() == "Summer linen"
    assert "1 pending" in page.locator("[data-testid=counts]").inner_text()
    assert page.locator("[data-testid=pending] li").all_inner_texts() == ["later"]
    failed = page.locator("[data-testid=failed] li[data-product-id=broken]")
    page.wait_for_function("document.querySelector('[data-testid=failed] li .reason') !== null")
    assert "broken" in failed.inner_text() and len(failed.locator(".reason").inner_text()) > 5
    page.wait_for_function("[...document.querySelectorAll('[data-testid=ranking] img')].every(i => i.naturalWidth > 0)")
    page.close()


def test_tiles_show_topic_fit_appeal_and_the_off_topic_badge(site, browser):
    url, _ = site
    expected = httpx.get(f"{url}/exhibitions/mixed/ranking", params={"limit": 100}).json()
    assert expected["off_topic"] == ["green"] and not expected["all_off_topic"]
    assert expected["items"][-1]["product_id"] == "green"  # flagged: after every fitting product

    page = browser.new_page()
    page.goto(f"{url}/ui#/exhibitions/mixed")
    page.wait_for_function("document.querySelectorAll('[data-testid=ranking] figure').length === 7")
    assert page.locator("[data-testid=offtopic]").inner_text() == "1 product looks off-topic"
    for item in expected["items"]:
        tile = page.locator(f"[data-testid=ranking] figure[data-product-id={item['product_id']}]")
        assert tile.get_attribute("data-off-topic") == str(item["off_topic"]).lower()
        assert tile.locator(".badge").count() == (1 if item["off_topic"] else 0)
        assert tile.locator(".bar[data-kind=fit] .value").inner_text() == f"{item['topic_fit']:.2f}"
        assert tile.locator(".bar[data-kind=appeal] .value").inner_text() == f"{item['appeal']:.3f}"
    assert page.locator("figure[data-product-id=green] .badge").inner_text() == "off-topic?"
    width = page.locator("figure[data-product-id=green] .bar[data-kind=fit] .fill").evaluate("e => e.style.width")
    assert width == f"{round(expected['items'][-1]['topic_fit'] * 100)}%"
    page.goto(f"{url}/ui#/exhibitions/knit")
    page.wait_for_function("document.querySelectorAll('[data-testid=ranking] figure').length === 3")
    page.wait_for_function("document.querySelector('[data-testid=offtopic]').dataset.count !== undefined")
    knit = httpx.get(f"{url}/exhibitions/knit/ranking").json()
    assert page.locator("[data-testid=offtopic]").get_attribute("data-count") == str(len(knit["off_topic"]))
    page.close()


def test_unknown_exhibition_shows_the_api_error(site, browser):
    url, _ = site
    page = browser.new_page()
    page.goto(f"{url}/ui#/exhibitions/nope")
    page.wait_for_selector("#error:not([hidden])")
    assert "404" in page.locator("#error").inner_text()
    page.close()


def test_pin_and_block_from_the_grid_and_the_diverse_collage(site, browser):
    """Pin and block from the ranking tiles (the key from the key box), the overrides listed
    with who changed them, the diverse collage toggle; the API agrees with what the page shows."""
    url, _ = site
    api = httpx.Client(base_url=url, headers={"X-API-Key": "k"})
    assert (
        api.put(
            "/exhibitions/merch", json={"topic": {"name": "Merch"}, "product_ids": [f"p{i}" for i in range(6)]}
        ).status_code
        == 200
    )
    order = [i["product_id"] for i in api.get("/exhibitions/merch/ranking").json()["items"]]
    page = browser.new_page()
    page.goto(f"{url}/ui#/exhibitions/merch")
    page.wait_for_function("document.querySelectorAll('[data-testid=ranking] figure').length === 6")
    # without a key the write is refused and the page says so
    page.locator(f"[data-testid=ranking] figure[data-product-id={order[0]}] button[data-action=block]").click()
    page.wait_for_selector("#error:not([hidden])")
    assert "401" in page.locator("#error").inner_text()
    page.locator("details.key summary").click()
    page.fill("#api-key", "k")
    page.locator("#api-key").dispatch_event("change")
    page.wait_for_function("document.querySelectorAll('[data-testid=ranking] figure').length === 6")
    page.locator(f"[data-testid=ranking] figure[data-product-id={order[0]}] button[data-action=block]").click()
    saved(page, 1)
    assert page.locator("[data-testid=ranking] figure").count() == 5
    assert page.locator("[data-testid=blocked] li").all_inner_texts() == [f"{order[0]} unblock"]
    # pin the last one at rank 1 (its tile's pin button pins it where the first tile is)
    page.locator("[data-testid=ranking] figure[data-rank='1'] button[data-action=pin]").click()
    saved(page, 2)
    first = page.locator("[data-testid=ranking] figure").nth(0)
    assert first.get_attribute("data-pinned") == "true"
    assert first.get_attribute("data-product-id") == order[1]
    assert first.locator(".badge.pin").inner_text() == "pinned"
    page.locator(f"[data-testid=ranking] figure[data-product-id={order[5]}] button[data-action=pin]").click()
    saved(page, 3)
    assert (
        page.locator(f"[data-testid=ranking] figure[data-product-id={order[5]}]").get_attribute("data-pinned") == "true"
    )
    o = api.get("/exhibitions/merch/overrides").json()
    assert o["blocked"] == [order[0]] and o["pinned"] == {order[1]: 1, order[5]: 5}
    assert o["updated_by"].startswith("key-")
    assert "last change by key-" in page.locator("#overrides-meta").inner_text()
    assert [li.get_attribute("data-product-id") for li in page.locator("[data-testid=pinned] li").all()] == [
        order[1],
        order[5],
    ]
    shown = [page.locator("[data-testid=ranking] figure").nth(i).get_attribute("data-product-id") for i in range(5)]
    assert shown == [i["product_id"] for i in api.get("/exhibitions/merch/ranking").json()["items"]]
    # the diverse collage: the API's diverse top 6, shown on demand
    assert page.locator("[data-testid=collage]").is_hidden()
    page.locator("#diverse-toggle").check()
    page.wait_for_function("document.querySelectorAll('[data-testid=collage] figure').length > 0")
    collage = [f.get_attribute("data-product-id") for f in page.locator("[data-testid=collage] figure").all()]
    expected = api.get("/exhibitions/merch/representative", params={"topk": 6, "diverse": "true"}).json()
    assert collage == [i["product_id"] for i in expected["items"]] and order[0] not in collage
    # unblock from the overrides list
    page.locator(f"[data-testid=blocked] li[data-product-id={order[0]}] button").click()
    saved(page, 4)
    assert page.locator("[data-testid=ranking] figure").count() == 6
    assert api.get("/exhibitions/merch/overrides").json()["blocked"] == []
    page.close()
    api.delete("/exhibitions/merch")


def saved(page, n: int) -> None:
    """Wait until the page has finished its n-th override change (ranking, lists, collage redrawn)."""
    page.wait_for_function(f"document.body.dataset.saved === '{n}'")


def test_experiment_page_shows_the_report_table_and_plot(site, browser):
    url, _ = site
    http = httpx.Client(base_url=url, headers={"X-API-Key": "k"})
    assert (
        http.put(
            "/experiments/ui-ab",
            json={
                "exhibitions": ["knit"],
                "arms": [
                    {"name": "control", "share": 1, "policy": "control"},
                    {"name": "clik", "share": 1, "policy": "model"},
                ],
            },
        ).status_code
        == 200
    )
    events = [
        {
            "event_id": f"ui-{arm}-{i}",
            "type": "impression",
            "exhibition_id": "knit",
            "product_id": "p3",
            "arm": f"ui-ab:{arm}",
        }
        for arm, n in (("control", 200), ("clik", 100))
        for i in range(n)
    ]
    events += [
        {
            "event_id": f"ui-{arm}-c{i}",
            "type": "click",
            "exhibition_id": "knit",
            "product_id": "p3",
            "arm": f"ui-ab:{arm}",
        }
        for arm, n in (("control", 10), ("clik", 12))
        for i in range(n)
    ]
    assert http.post("/events", json={"events": events}).status_code == 202  # embedded: counted at once
    expected = http.get("/experiments/ui-ab").json()

    page = browser.new_page()
    page.goto(f"{url}/ui")
    page.locator("[data-testid=experiments-link]").click()
    page.locator("[data-testid=experiments] a", has_text="ui-ab").click()
    page.wait_for_selector("[data-testid=experiment-report] tr[data-arm=clik]")
    row = page.locator("[data-testid=experiment-report] tr[data-arm=clik] td").all_inner_texts()
    clik = next(a for a in expected["arms"] if a["arm"] == "clik")
    assert row[:5] == ["clik", "model", "100", "12", "12.00%"]
    assert row[6] == f"{clik['p_beats_control']:.3f}" and row[7] == "140.00%"  # 12% over 5%
    assert page.locator("[data-testid=experiment-plot] circle").count() == 2
    page.close()
