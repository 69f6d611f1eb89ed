"""The demo shop page served at ``/``: plain HTML, CSS and JavaScript, no build step.

A grid of products (best-sellers first, a search box, previous / next pages) and, beside it,
the browsing history kept in the page and the recommendations for it. Clicking any product
(in the grid or among the recommendations) appends it to the history and asks
``POST /recommend`` again. Kept in a Python string so that it ships with the package.

Hooks for tests: product cards are ``.card[data-item-id]``; ``#grid`` carries the search it
shows in ``data-query``; ``#recs`` carries ``data-version`` (incremented after each rendered
answer) and ``data-source``.
"""

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>seqrec demo shop</title>
<style>
  :root { font-family: system-ui, sans-serif; color: #222; background: #fafafa; }
  body { margin: 0; }
  header { display: flex; gap: 1rem; align-items: center; padding: .6rem 1rem;
           background: #222; color: #fff; }
  header h1 { font-size: 1.2rem; margin: 0; }
  header input { flex: 0 1 20rem; padding: .35rem .5rem; font-size: 1rem; }
  header label { font-size: .9rem; }
  main { display: grid; grid-template-columns: minmax(0, 1fr) 24rem; gap: 1rem; padding: 1rem; }
  h2 { font-size: 1rem; margin: .2rem 0 .6rem; }
  h2 small { font-weight: normal; color: #777; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(8.5rem, 1fr));
          gap: .6rem; }
  .grid.small { grid-template-columns: repeat(3, minmax(0, 1fr)); }
  .card { display: flex; flex-direction: column; align-items: stretch; padding: .3rem;
          border: 1px solid #ddd; border-radius: 6px; background: #fff; cursor: pointer;
          text-align: left; font: inherit; min-width: 0; }
  .card:hover { border-color: #888; }
  .card img, .card .noimg { width: 100%; aspect-ratio: 3 / 4; object-fit: contain;
                            background: #f0f0f0; }
  .card .title { font-size: .8rem; margin-top: .25rem; overflow: hidden;
                 text-overflow: ellipsis; white-space: nowrap; }
  .card .price { font-size: .75rem; color: #555; }
  .card .score { font-size: .7rem; color: #999; }
  nav { display: flex; gap: .8rem; align-items: center; margin-top: .8rem; }
  #history { display: flex; flex-wrap: wrap; gap: .3rem; list-style: none; padding: 0;
             margin: 0 0 1rem; min-height: 1.5rem; }
  #history li { font-size: .75rem; background: #e8e8e8; border-radius: 4px;
                padding: .1rem .35rem; }
  #error { color: #b00; }
</style>
</head>
<body>
<header>
  <h1>seqrec demo shop</h1>
  <input id="search" type="search" placeholder="Search products" aria-label="Search products">
  <label><input id="remove-seen" type="checkbox"> hide viewed items</label>
  <span id="error" role="alert"></span>
</header>
<main>
  <section>
    <h2>Products <small id="total"></small></h2>
    <div id="grid" class="grid" data-query=""></div>
    <nav>
      <button id="prev" type="button">Previous</button>
      <span id="pageinfo"></span>
      <button id="next" type="button">Next</button>
    </nav>
  </section>
  <aside>
    <h2>Your history <button id="clear" type="button">Clear</button></h2>
    <ol id="history"></ol>
    <h2>Recommended for you <small id="source"></small></h2>
    <div id="recs" class="grid small" data-version="0"></div>
  </aside>
</main>
<script>
"use strict";
const PAGE_SIZE = 36;
const MAX_HISTORY = 50;
const state = { q: "", offset: 0, total: 0, history: [], asked: 0 };
const $ = (id) => document.getElementById(id);

async function call(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail ? JSON.stringify(body.detail) : response.status);
  return body;
}

function card(item, score) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = "card";
  el.dataset.itemId = item.item_id;
  el.title = item.title;
  if (item.image_url) {
    const img = document.createElement("img");
    img.src = item.image_url;
    img.alt = item.title;
    img.loading = "lazy";
    el.append(img);
  } else {
    const blank = document.createElement("div");
    blank.className = "noimg";
    el.append(blank);
  }
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = item.title;
  el.append(title);
  if (item.price !== null && item.price !== undefined) {
    const price = document.createElement("span");
    price.className = "price";
    price.textContent = Number(item.price).toFixed(2);
    el.append(price);
  }
  if (score !== undefined) {
    const s = document.createElement("span");
    s.className = "score";
    s.textContent = "score " + score.toFixed(3);
    el.append(s);
  }
  el.addEventListener("click", () => view(item));
  return el;
}

async function loadPage() {
  const params = new URLSearchParams({ offset: state.offset, limit: PAGE_SIZE });
  if (state.q) params.set("q", state.q);
  try {
    const page = await call("/items?" + params);
    state.total = page.total;
    $("grid").replaceChildren(...page.items.map((item) => card(item)));
    $("grid").dataset.query = state.q;
    const last = Math.min(state.offset + PAGE_SIZE, page.total);
    $("pageinfo").textContent = page.total ? `${state.offset + 1}-${last} of ${page.total}` : "";
    $("total").textContent = `(${page.total})`;
    $("prev").disabled = state.offset === 0;
    $("next").disabled = last >= page.total;
    $("error").textContent = "";
  } catch (error) {
    $("error").textContent = "catalogue: " + error.message;
  }
}

function renderHistory() {
  $("history").replaceChildren(
    ...state.history.map((item) => {
      const li = document.createElement("li");
      li.textContent = item.title;
      return li;
    })
  );
}

async function recommend() {
  const asked = ++state.asked;  // answers that arrive after a newer question are dropped
  const body = {
    history: state.history.map((item) => item.item_id),
    k: 12,
    remove_seen: $("remove-seen").checked,
  };
  try {
    const answer = await call("/recommend", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (asked !== state.asked) return;
    const recs = $("recs");
    recs.replaceChildren(...answer.items.map((item) => card(item, item.score)));
    recs.dataset.source = answer.source;
    recs.dataset.version = String(Number(recs.dataset.version) + 1);
    $("source").textContent =
      answer.source === "popularity" ? "(best-sellers: no history yet)" : "(from your history)";
    $("error").textContent = "";
  } catch (error) {
    $("error").textContent = "recommend: " + error.message;
  }
}

function view(item) {
  state.history.push(item);
  if (state.history.length > MAX_HISTORY) state.history.shift();
  renderHistory();
  recommend();
}

let searchTimer = null;
$("search").addEventListener("input", (event) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    state.q = event.target.value.trim();
    state.offset = 0;
    loadPage();
  }, 200);
});
$("prev").addEventListener("click", () => {
  state.offset = Math.max(0, state.offset - PAGE_SIZE);
  loadPage();
});
$("next").addEventListener("click", () => {
  state.offset += PAGE_SIZE;
  loadPage();
});
$("clear").addEventListener("click", () => {
  state.history = [];
  renderHistory();
  recommend();
});
$("remove-seen").addEventListener("change", recommend);
loadPage();
recommend();
</script>
</body>
</html>
"""
