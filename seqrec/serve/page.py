"""The demo shop page served at ``/``: plain HTML, CSS and JavaScript, no build step.

A grid of products (best-sellers first, a search box, previous / next pages) and, beside it,
the shopper's history and the recommendations for it. Kept in a Python string so that it ships
with the package.

The page keeps a shopper id (random on the first visit, in localStorage, shown in the header;
"New shopper" draws another) and a shop token (the header's password field, in
sessionStorage). Without a token, clicking any product (in the grid or among the
recommendations) appends it to the history kept in the page and asks ``POST /recommend``
again; the page says that events need a token. With a token it is the live shop
(`seqrec.serve.shop_routes`): each click sends a ``view`` event of the shopper (time: now, ISO)
to ``POST /events`` and the recommendations come from ``GET /users/{id}/recommendations``;
"Clear" erases the shopper's stored events (``DELETE /users/{id}``). The "Add a product" form
has a field per column of the served items (the ``text`` keys of ``GET /items/{id}`` of the
first catalogue item, plus title and price), a JSON field for other columns and an image file,
and posts them to ``POST /items`` (`seqrec.serve.catalogue_routes`), showing the answer or the
error's ``detail``.

Hooks for tests: product cards are ``.card[data-item-id]``; ``#grid`` carries the search it
shows in ``data-query``; ``#recs`` carries ``data-version`` (incremented after each rendered
answer), ``data-source`` and ``data-endpoint`` (the path that answered: ``/recommend`` or
``/users/{id}/recommendations``). ``#shopper[data-shopper-id]`` is the shopper, ``#token`` the
token field, ``#mode[data-mode]`` is ``page`` (no token) or ``live``, ``#error`` shows the last
failed call with its HTTP status. The form is ``#add-form``: one ``input[name=COLUMN]`` per
column in ``#add-fields``, ``#add-extra`` (JSON), ``#add-image``; ``#add-result`` shows the
outcome, with ``data-status`` the HTTP status (``201`` when added; ``sending`` meanwhile,
``page`` when the JSON field cannot be read) and ``data-item-id``.
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
  header { display: flex; flex-wrap: wrap; gap: .6rem 1rem; align-items: center;
           padding: .6rem 1rem; background: #222; color: #fff; font-size: .9rem; }
  header h1 { font-size: 1.2rem; margin: 0; }
  header input[type=search] { flex: 0 1 18rem; padding: .35rem .5rem; font-size: 1rem; }
  header input[type=password] { width: 9rem; padding: .3rem .4rem; }
  #shopper { font-family: monospace; }
  main { display: grid; grid-template-columns: minmax(0, 1fr) 24rem; gap: 1rem; padding: 1rem; }
  h2 { font-size: 1rem; margin: .2rem 0 .6rem; }
  h2 small, #mode { font-weight: normal; color: #777; font-size: .8rem; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(8.5rem, 1fr));
          gap: .6rem; }
  .grid.small { grid-template-columns: repeat(3, minmax(0, 1fr)); }
  .card { display: flex; flex-direction: column; padding: .3rem; border: 1px solid #ddd;
          border-radius: 6px; background: #fff; cursor: pointer; text-align: left;
          font: inherit; min-width: 0; }
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
  #error { color: #f88; }
  #add-form { margin-top: 1.2rem; font-size: .8rem; }
  #add-form label { display: block; margin-bottom: .3rem; }
  #add-form input { display: block; width: 100%; box-sizing: border-box; }
  #add-result { color: #b00; }
  #add-result[data-status="201"], #add-result[data-status="sending"] { color: #070; }
</style>
</head>
<body>
<header>
  <h1>seqrec demo shop</h1>
  <input id="search" type="search" placeholder="Search products" aria-label="Search products">
  <label><input id="remove-seen" type="checkbox"> hide viewed items</label>
  <span>shopper <span id="shopper"></span></span>
  <button id="new-shopper" type="button">New shopper</button>
  <label>shop token <input id="token" type="password" autocomplete="off"></label>
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
    <p id="mode" data-mode="page"></p>
    <ol id="history"></ol>
    <h2>Recommended for you <small id="source"></small></h2>
    <div id="recs" class="grid small" data-version="0"></div>
    <form id="add-form">
      <h2>Add a product <small>(needs the shop token)</small></h2>
      <div id="add-fields"></div>
      <label>other columns (JSON object)
        <input id="add-extra" placeholder='{"category": "bag"}'></label>
      <label>image <input id="add-image" type="file" accept="image/*"></label>
      <button type="submit">Add</button>
      <p id="add-result" role="status"></p>
    </form>
  </aside>
</main>
<script>
"use strict";
const PAGE_SIZE = 36;
const MAX_HISTORY = 50;
const K = 12;
const JSON_TYPE = { "Content-Type": "application/json" };
const state = { q: "", offset: 0, history: [], asked: 0, shopper: "", token: "", clock: "" };
const $ = (id) => document.getElementById(id);

function problem(status, body) {
  const detail = body && body.detail;
  if (Array.isArray(detail)) {
    return status + " " + detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }
  return detail ? `${status} ${detail}` : String(status);
}

async function call(url, options = {}, auth = false) {
  if (auth && state.token) {
    options.headers = { ...options.headers, Authorization: "Bearer " + state.token };
  }
  const response = await fetch(url, options);
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(problem(response.status, body));
    error.status = response.status;
    throw error;
  }
  return body;
}

function span(className, text) {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}

function card(item, score) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = "card";
  el.dataset.itemId = item.item_id;
  el.title = item.title;
  const img = document.createElement(item.image_url ? "img" : "div");
  if (item.image_url) Object.assign(img, { src: item.image_url, alt: item.title, loading: "lazy" });
  else img.className = "noimg";
  el.append(img, span("title", item.title));
  if (item.price !== null && item.price !== undefined) {
    el.append(span("price", Number(item.price).toFixed(2)));
  }
  if (score !== undefined) el.append(span("score", "score " + score.toFixed(3)));
  el.addEventListener("click", () => view(item));
  return el;
}

async function loadPage() {
  const params = new URLSearchParams({ offset: state.offset, limit: PAGE_SIZE });
  if (state.q) params.set("q", state.q);
  try {
    const page = await call("/items?" + params);
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

function userPath() {
  return "/users/" + encodeURIComponent(state.shopper);
}

async function ask(live) {
  const seen = $("remove-seen").checked;
  if (live) {
    const path = userPath() + "/recommendations";
    return [path, await call(`${path}?k=${K}&remove_seen=${seen}`)];
  }
  const history = state.history.map((item) => item.item_id);
  const body = JSON.stringify({ history, k: K, remove_seen: seen });
  return ["/recommend", await call("/recommend", { method: "POST", headers: JSON_TYPE, body })];
}

async function recommend() {
  const asked = ++state.asked;  // answers that arrive after a newer question are dropped
  const live = Boolean(state.token);
  try {
    const [path, answer] = await ask(live);
    if (asked !== state.asked) return;
    const recs = $("recs");
    recs.replaceChildren(...answer.items.map((item) => card(item, item.score)));
    recs.dataset.source = answer.source;
    recs.dataset.endpoint = path;
    recs.dataset.version = String(Number(recs.dataset.version) + 1);
    const basis = live ? "your stored events" : "your history";
    $("source").textContent = answer.source === "popularity"
      ? `(best-sellers: nothing in ${basis} yet)` : `(${answer.source}, from ${basis})`;
    $("error").textContent = "";
  } catch (error) {
    $("error").textContent = "recommend: " + error.message;
  }
}

async function sendView(item) {
  const event = {
    user_id: state.shopper,
    item_id: item.item_id,
    type: "view",
    // a bundle whose clock only orders events takes integers: milliseconds keep the order
    timestamp: state.clock === "order" ? Date.now() : new Date().toISOString(),
  };
  const body = JSON.stringify({ events: [event] });
  await call("/events", { method: "POST", headers: JSON_TYPE, body }, true);
}

async function view(item) {
  state.history.push(item);
  if (state.history.length > MAX_HISTORY) state.history.shift();
  renderHistory();
  if (state.token) {
    try {
      await sendView(item);
    } catch (error) {
      $("error").textContent = "events: " + error.message;
      return;
    }
  }
  recommend();
}

function setShopper(id) {
  state.shopper = id;
  localStorage.setItem("seqrec.shopper", id);
  $("shopper").textContent = id;
  $("shopper").dataset.shopperId = id;
}

function newShopperId() {
  const bytes = crypto.getRandomValues(new Uint8Array(6));  // no secure context needed
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function setToken(token) {
  state.token = token;
  if (token) sessionStorage.setItem("seqrec.token", token);
  else sessionStorage.removeItem("seqrec.token");
  $("mode").dataset.mode = token ? "live" : "page";
  $("mode").textContent = token
    ? "Live shop: each view is stored as an event of this shopper (POST /events)."
    : "This history stays in the page (POST /recommend): events need a shop token.";
}

async function clearHistory() {
  state.history = [];
  renderHistory();
  if (state.token) {
    try {
      const erased = await call(userPath(), { method: "DELETE" }, true);
      $("mode").textContent = `Erased ${erased.deleted} stored events of this shopper.`;
    } catch (error) {
      $("error").textContent = "erase: " + error.message;
      return;
    }
  }
  recommend();
}

async function buildForm() {
  let columns = ["description"];
  try {
    const first = (await call("/items?limit=1")).items[0];
    const detail = first && (await call("/items/" + encodeURIComponent(first.item_id)));
    if (detail) columns = Object.keys(detail.text);
  } catch (error) {
    $("error").textContent = "catalogue: " + error.message;
  }
  const names = [...new Set(["item_id", "title", "price", ...columns])];
  $("add-fields").replaceChildren(
    ...names.map((name) => {
      const label = document.createElement("label");
      const input = document.createElement("input");
      Object.assign(input, { name, required: name === "item_id" });
      label.append(name, input);
      return label;
    })
  );
}

function formFields() {
  const extra = $("add-extra").value.trim();
  const fields = extra ? JSON.parse(extra) : {};  // a SyntaxError names what is wrong
  if (typeof fields !== "object" || fields === null || Array.isArray(fields)) {
    throw new Error("other columns must be a JSON object");
  }
  for (const input of $("add-fields").querySelectorAll("input")) {
    const value = input.value.trim();
    const number = Number(value);
    if (!value) continue;
    fields[input.name] = input.name === "price" && Number.isFinite(number) ? number : value;
  }
  return fields;
}

async function addProduct(event) {
  event.preventDefault();
  const result = $("add-result");
  const form = new FormData();
  try {
    form.append("item", JSON.stringify(formFields()));
  } catch (error) {
    Object.assign(result.dataset, { status: "page", itemId: "" });
    result.textContent = "not sent: " + error.message;
    return;
  }
  const image = $("add-image").files[0];
  if (image) form.append("image", image);
  Object.assign(result.dataset, { status: "sending", itemId: "" });
  result.textContent = "adding...";
  try {
    const added = await call("/items", { method: "POST", body: form }, true);
    Object.assign(result.dataset, { status: "201", itemId: added.item_id });
    result.textContent =
      `Added ${added.item_id}: ${added.n_items} items served (${added.seconds.toFixed(2)} s).`;
    $("add-form").reset();
    loadPage();
  } catch (error) {
    Object.assign(result.dataset, { status: String(error.status || "network"), itemId: "" });
    result.textContent = "not added: " + error.message;
  }
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
let tokenTimer = null;
$("token").addEventListener("input", (event) => {
  clearTimeout(tokenTimer);
  tokenTimer = setTimeout(() => {
    setToken(event.target.value.trim());
    recommend();
  }, 300);
});
$("prev").addEventListener("click", () => {
  state.offset = Math.max(0, state.offset - PAGE_SIZE);
  loadPage();
});
$("next").addEventListener("click", () => {
  state.offset += PAGE_SIZE;
  loadPage();
});
$("new-shopper").addEventListener("click", () => {
  setShopper(newShopperId());
  state.history = [];
  renderHistory();
  recommend();
});
$("clear").addEventListener("click", clearHistory);
$("remove-seen").addEventListener("change", recommend);
$("add-form").addEventListener("submit", addProduct);
setShopper(localStorage.getItem("seqrec.shopper") || newShopperId());
setToken(sessionStorage.getItem("seqrec.token") || "");
$("token").value = state.token;
fetch("/health").then((answer) => answer.json()).then((health) => {
  state.clock = health.time_unit;
});
loadPage();
recommend();
buildForm();
</script>
</body>
</html>
"""
