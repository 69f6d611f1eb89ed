"""End to end: the demo shop page in headless Chromium, clicking products updates the picks.

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
def page(shop_url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(20_000)
        yield page
        browser.close()


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
