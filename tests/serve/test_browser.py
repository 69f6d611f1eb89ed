"""End to end: the demo shop page in headless Chromium. Clicking products updates the picks;
with the shop token typed in, the clicks are stored as the shopper's events and a product is
added through the page's form.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the playwright Python package;
skips otherwise. ``SEQREC_DEMO_BUNDLE=DIR`` serves another bundle, and
``SEQREC_DEMO_SCREENSHOT=FILE.png`` saves a screenshot of the page after the clicks (how
``benchmarks/results/demo_shop.png`` is made).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
TOKEN = "page-token"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not shutil.which(CHROMIUM):
    pytest.skip(f"no browser at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def shop_url(bundle_path, serve_on_loopback):
    """The app under uvicorn in a thread, on a free loopback port."""
    from seqrec.serve import create_app

    with serve_on_loopback(create_app(os.environ.get("SEQREC_DEMO_BUNDLE", bundle_path))) as url:
        yield url


@pytest.fixture(scope="module")
def live_shop_url(bundle_path, serve_on_loopback, tmp_path_factory):
    """The app with a token file and a fresh SQLite shop, on a free loopback port."""
    from seqrec.bundle import load_bundle
    from seqrec.serve import ServeConfig, create_app
    from seqrec.serve.store import Store

    folder = tmp_path_factory.mktemp("live_page")
    (folder / "token").write_text(TOKEN + "\n")
    config = ServeConfig(token_file=str(folder / "token"))
    store = Store(f"sqlite:///{folder / 'shop.db'}")
    with serve_on_loopback(create_app(load_bundle(bundle_path), config, store=store)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A page of its own (fresh localStorage and sessionStorage) for each test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def card_ids(page, selector: str) -> list[str]:
    return page.locator(f"{selector} .card").evaluate_all(
        "cards => cards.map(c => c.dataset.itemId)"
    )


@pytest.mark.browser
def test_clicking_products_updates_recommendations(page, shop_url):
    expect = sync_api.expect
    page.goto(shop_url + "/")
    recs = page.locator("#recs")
    expect(recs).to_have_attribute("data-version", "1")
    expect(recs).to_have_attribute("data-source", "popularity")
    expect(page.locator("#grid .card")).to_have_count(36)
    best_sellers = card_ids(page, "#recs")
    assert len(best_sellers) == 12

    page.locator("#grid .card").nth(3).click()
    expect(recs).to_have_attribute("data-version", "2")
    expect(recs).to_have_attribute("data-source", "model")
    after_one = card_ids(page, "#recs")
    assert len(after_one) == 12 and after_one != best_sellers

    page.locator("#recs .card").nth(5).click()  # a recommended product joins the history too
    expect(recs).to_have_attribute("data-version", "3")
    after_two = card_ids(page, "#recs")
    assert after_two != after_one
    expect(page.locator("#history li")).to_have_count(2)

    images_loaded = page.locator("#recs img").evaluate_all(
        "imgs => Promise.all(imgs.map(i => i.decode().then(() => i.naturalWidth > 0, () => false)))"
    )
    assert images_loaded and all(images_loaded)
    assert page.locator("#error").text_content() == ""
    if os.environ.get("SEQREC_DEMO_SCREENSHOT"):
        page.screenshot(path=Path(os.environ["SEQREC_DEMO_SCREENSHOT"]), full_page=False)

    page.locator("#clear").click()
    expect(recs).to_have_attribute("data-source", "popularity")
    assert card_ids(page, "#recs") == best_sellers


@pytest.mark.browser
def test_search_filters_the_grid(page, shop_url):
    page.goto(shop_url + "/")
    first_title = page.locator("#grid .card .title").first.text_content()
    word = first_title.split()[-1]  # a product type of the demo shop, e.g. "bag"
    page.fill("#search", word)
    sync_api.expect(page.locator("#grid")).to_have_attribute("data-query", word)
    expected = httpx.get(shop_url + "/items", params={"q": word, "limit": 36}).json()
    assert expected["items"]
    assert card_ids(page, "#grid") == [item["item_id"] for item in expected["items"]]
    assert any(word in title for title in page.locator("#grid .title").all_text_contents())


def type_token(page, token: str) -> None:
    page.fill("#token", token)
    sync_api.expect(page.locator("#mode")).to_have_attribute("data-mode", "live")


@pytest.mark.browser
def test_live_shop_stores_views_and_reads_them_back(page, live_shop_url):
    expect = sync_api.expect
    page.goto(live_shop_url + "/")
    recs = page.locator("#recs")
    expect(recs).to_have_attribute("data-version", "1")
    expect(recs).to_have_attribute("data-endpoint", "/recommend")  # no token: the page's history
    expect(page.locator("#mode")).to_have_attribute("data-mode", "page")
    expect(page.locator("#mode")).to_contain_text("events need a shop token")
    shopper = page.locator("#shopper").get_attribute("data-shopper-id")
    assert shopper and page.locator("#shopper").text_content() == shopper

    type_token(page, TOKEN)
    by_id = f"/users/{shopper}/recommendations"
    expect(recs).to_have_attribute("data-endpoint", by_id)
    expect(recs).to_have_attribute("data-source", "popularity")  # no event stored yet
    clicked = []
    for nth, version in ((2, "3"), (7, "4")):
        card = page.locator("#grid .card").nth(nth)
        clicked.append(card.get_attribute("data-item-id"))
        with page.expect_response(lambda r: r.url.endswith("/events")) as posted:
            card.click()
        assert posted.value.status == 200 and posted.value.request.method == "POST"
        expect(recs).to_have_attribute("data-version", version)
    expect(recs).to_have_attribute("data-source", "model")
    expect(recs).to_have_attribute("data-endpoint", by_id)
    assert page.locator("#error").text_content() == ""

    # the events are stored: the API answers from them, and the page shows the same ranking
    answer = httpx.get(live_shop_url + by_id, params={"k": 12, "remove_seen": False}).json()
    assert answer["source"] == "model" and answer["history_used"] == len(clicked)
    assert card_ids(page, "#recs") == [item["item_id"] for item in answer["items"]]
    other = httpx.get(live_shop_url + "/users/someone-else/recommendations").json()
    assert other["source"] == "popularity"

    page.reload()  # the shopper and the token are kept
    expect(page.locator("#shopper")).to_have_attribute("data-shopper-id", shopper)
    expect(page.locator("#mode")).to_have_attribute("data-mode", "live")
    expect(recs).to_have_attribute("data-source", "model")

    page.locator("#clear").click()  # with a token: erases the shopper's stored events
    expect(page.locator("#mode")).to_contain_text(f"Erased {len(clicked)} stored events")
    expect(recs).to_have_attribute("data-source", "popularity")
    assert httpx.get(live_shop_url + by_id).json()["source"] == "popularity"


@pytest.mark.browser
def test_add_a_product_through_the_page(page, live_shop_url, tmp_path):
    from PIL import Image

    photo = tmp_path / "new.png"
    Image.new("RGB", (24, 32), (200, 30, 60)).save(photo)
    page.goto(live_shop_url + "/")
    type_token(page, TOKEN)
    form = page.locator("#add-form")
    expect = sync_api.expect
    expect(form.locator("input[name=description]")).to_be_visible()  # the bundle's column
    form.locator("input[name=item_id]").fill("PAGE-NEW-1")
    form.locator("input[name=title]").fill("Page red scarf")
    form.locator("input[name=price]").fill("19.5")
    form.locator("input[name=description]").fill("A soft red scarf in wool.")
    page.fill("#add-extra", '{"category": "scarf", "colour": "red"}')
    page.set_input_files("#add-image", photo)
    form.locator("button[type=submit]").click()

    result = page.locator("#add-result")
    expect(result).to_have_attribute("data-status", "201")
    expect(result).to_have_attribute("data-item-id", "PAGE-NEW-1")
    expect(result).to_contain_text("Added PAGE-NEW-1")
    detail = httpx.get(live_shop_url + "/items/PAGE-NEW-1").json()
    assert detail["title"] == "Page red scarf" and detail["price"] == 19.5
    assert detail["text"]["description"] == "A soft red scarf in wool."
    image = httpx.get(live_shop_url + "/items/PAGE-NEW-1/image")
    assert image.status_code == 200 and image.content == photo.read_bytes()

    form.locator("input[name=item_id]").fill("PAGE-NEW-1")  # the same id again: 409, shown
    form.locator("button[type=submit]").click()
    expect(result).to_have_attribute("data-status", "409")
    expect(result).to_contain_text("PAGE-NEW-1")


@pytest.mark.browser
def test_a_wrong_token_is_shown_in_the_page(page, live_shop_url):
    expect = sync_api.expect
    page.goto(live_shop_url + "/")
    expect(page.locator("#recs")).to_have_attribute("data-version", "1")
    type_token(page, "not-the-token")
    page.locator("#grid .card").first.click()
    expect(page.locator("#error")).to_contain_text("events: 401 missing or wrong token")
    shopper = page.locator("#shopper").get_attribute("data-shopper-id")
    answer = httpx.get(f"{live_shop_url}/users/{shopper}/recommendations").json()
    assert answer["source"] == "popularity"  # nothing was stored

    page.locator("#add-form input[name=item_id]").fill("PAGE-NEVER")
    page.locator("#add-form button[type=submit]").click()
    expect(page.locator("#add-result")).to_have_attribute("data-status", "401")
    expect(page.locator("#add-result")).to_contain_text("401 missing or wrong token")
    assert page.locator("#add-form input[name=item_id]").input_value() == "PAGE-NEVER"  # kept
    assert httpx.get(live_shop_url + "/items/PAGE-NEVER").status_code == 404
