// The operators' page: plain JavaScript over the JSON routes (no build step, nothing to install).
"use strict";

const PAGE = 24;       // exhibitions per page
const RANK_PAGE = 60;  // ranking tiles per "show more"
const $ = (id) => document.getElementById(id);
// grid: bumped whenever the ranking grid is cleared, so a page of tiles still on its way for the
// grid before (a route change and a pin racing) is dropped instead of appended.
const state = { offset: 0, rankOffset: 0, exhibition: null, overrides: null, saves: 0, grid: 0 };

function apiKey() { return localStorage.getItem("clik-api-key") || ""; }

async function api(path) {
  const headers = apiKey() ? { "X-API-Key": apiKey() } : {};
  // no-cache: rankings are sent with Cache-Control max-age for CDNs; an operator's page must see
  // its own pins at once, so the browser revalidates every time (a 304 when nothing changed).
  const res = await fetch(path, { headers, cache: "no-cache" });
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = JSON.stringify((await res.json()).detail); } catch (_) { /* not JSON */ }
    throw new Error(`${res.status} ${path}: ${detail}`);
  }
  return res.json();
}

// Writes (pin, block) need the key in the key box: the page never stores one elsewhere.
async function apiWrite(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (apiKey()) headers["X-API-Key"] = apiKey();
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = JSON.stringify((await res.json()).detail); } catch (_) { /* not JSON */ }
    throw new Error(`${res.status} ${method} ${path}: ${detail}`);
  }
  return res.status === 204 ? null : res.json();
}

// Images go through fetch so a key, when reads need one, travels in the header.
async function imageInto(img, productId) {
  const headers = apiKey() ? { "X-API-Key": apiKey() } : {};
  try {
    const res = await fetch(`/products/${encodeURIComponent(productId)}/image`, { headers });
    if (!res.ok) throw new Error(res.status);
    img.src = URL.createObjectURL(await res.blob());
  } catch (_) {
    img.alt = "image unavailable";
    img.classList.add("noimg");
  }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function showError(err) {
  $("error").textContent = String(err.message || err);
  $("error").hidden = false;
}

async function showModel() {
  try {
    const ready = await api("/readyz");
    $("model").textContent = `model: ${ready.model_version ? ready.model_version.slice(0, 12) : "none active"}`;
    $("model").dataset.version = ready.model_version || "";
  } catch (err) {
    $("model").textContent = "model: unavailable";
  }
}

async function showList() {
  $("detail-view").hidden = true;
  $("list-view").hidden = false;
  const page = await api(`/exhibitions?offset=${state.offset}&limit=${PAGE}`);
  const box = $("exhibitions");
  box.replaceChildren();
  for (const ex of page.items) {
    const img = el("img", { class: "thumb", alt: `representative image of ${ex.name}` });
    const card = el("a", { class: "card", href: `#/exhibitions/${encodeURIComponent(ex.exhibition_id)}`,
                           "data-exhibition-id": ex.exhibition_id },
      img, el("div", { class: "body" }, el("div", { class: "name" }, ex.name || ex.exhibition_id),
                                        el("div", { class: "meta" }, `${ex.products} products`)));
    box.append(card);
    api(`/exhibitions/${encodeURIComponent(ex.exhibition_id)}/representative?topk=1`).then((r) => {
      if (r.items.length) {
        card.dataset.representative = r.items[0].product_id;
        imageInto(img, r.items[0].product_id);
      } else {
        img.alt = "nothing encoded yet";
      }
    }).catch(() => { img.alt = "no ranking"; });
  }
  const last = Math.min(page.offset + page.items.length, page.total);
  $("page-info").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "no exhibitions yet";
  $("prev").disabled = state.offset === 0;
  $("next").disabled = last >= page.total;
}

async function showExhibition(id) {
  $("list-view").hidden = true;
  $("detail-view").hidden = false;
  state.exhibition = id;
  state.rankOffset = 0;
  const ex = await api(`/exhibitions/${encodeURIComponent(id)}`);
  $("topic-name").textContent = ex.topic.name || id;
  $("topic-meta").textContent = ["date", "cat1", "cat2", "cat3", "cat4", "kwds"]
    .filter((k) => ex.topic[k]).map((k) => `${k}: ${ex.topic[k]}`).join(" · ");
  $("ranking").replaceChildren();
  state.grid += 1;
  await Promise.all([loadRanking(true), showOverrides(), showCollage()]);
}

const overridesPath = () => `/exhibitions/${encodeURIComponent(state.exhibition)}/overrides`;

// The exhibition's pins and blocks, with who changed them last; an "unblock" per blocked one.
async function showOverrides() {
  const o = await api(overridesPath());
  state.overrides = o;
  const pins = Object.entries(o.pinned).sort((a, b) => a[1] - b[1]);
  $("pinned-list").replaceChildren(...pins.map(([pid, pos]) =>
    el("li", { "data-product-id": pid, "data-position": String(pos) }, `#${pos} ${pid} `,
       button("unpin", () => changeOverrides((p, b) => { delete p[pid]; return [p, b]; })))));
  $("blocked-list").replaceChildren(...o.blocked.map((pid) =>
    el("li", { "data-product-id": pid }, `${pid} `,
       button("unblock", () => changeOverrides((p, b) => [p, b.filter((x) => x !== pid)])))));
  $("overrides-meta").textContent = o.updated_at ?
    `last change by ${o.updated_by}, ${new Date(o.updated_at * 1000).toLocaleString()}` : "no overrides";
}

function button(text, onClick) {
  const b = el("button", { type: "button", class: "small", "data-action": text }, text);
  b.addEventListener("click", (e) => { e.preventDefault(); onClick(); });
  return b;
}

// Read-modify-write of the overrides, then everything that depends on them again.
async function changeOverrides(edit) {
  try {
    const o = await api(overridesPath());
    const [pinned, blocked] = edit({ ...o.pinned }, [...o.blocked]);
    await apiWrite("PUT", overridesPath(), { pinned, blocked, boosts: o.boosts });
    state.rankOffset = 0;
    $("ranking").replaceChildren();
  state.grid += 1;
    await Promise.all([loadRanking(true), showOverrides(), showCollage()]);
    document.body.dataset.saved = String(++state.saves);  // what tests (and people) can wait for
  } catch (err) {
    showError(err);
  }
}

// The diverse collage: the top 6 of the diverse selection (one per family, no near-duplicates).
async function showCollage() {
  const on = $("diverse-toggle").checked;
  $("collage").hidden = !on;
  if (!on) return;
  const r = await api(`/exhibitions/${encodeURIComponent(state.exhibition)}/representative?topk=6&diverse=true`);
  $("collage").replaceChildren(...r.items.map((item) => {
    const img = el("img", { class: "thumb", alt: item.product_id });
    imageInto(img, item.product_id);
    return el("figure", { class: "tile", "data-product-id": item.product_id, "data-rank": String(item.rank) },
      img, el("figcaption", { class: "body" }, `#${item.rank} ${item.product_id}`));
  }));
}

async function loadRanking(first) {
  const grid = state.grid;
  const id = state.exhibition;
  const page = await api(`/exhibitions/${encodeURIComponent(id)}/ranking?offset=${state.rankOffset}&limit=${RANK_PAGE}`);
  if (grid !== state.grid) return;  // the grid was cleared meanwhile: these tiles are stale
  for (const item of page.items) {
    const img = el("img", { class: "thumb", alt: item.product_id });
    const classes = ["tile"].concat(item.rank === 1 ? ["top"] : [], item.off_topic ? ["flagged"] : []);
    const tile = el("figure", { class: classes.join(" "), "data-product-id": item.product_id,
                                "data-rank": String(item.rank), "data-off-topic": String(item.off_topic),
                                "data-pinned": String(item.pinned) },
      img, el("figcaption", { class: "body" }, el("span", { class: "rank" }, `#${item.rank}`),
                                               el("span", { class: "score" }, item.score.toFixed(4))),
      bar("topic fit", "fit", item.topic_fit, item.topic_fit.toFixed(2)),
      // appeal is a cosine in [-1, 1]: the bar shows it on that range
      bar("appeal", "appeal", (item.appeal + 1) / 2, item.appeal.toFixed(3)),
      ...Object.entries(item.boosts || {}).map(([name, v]) =>
        el("div", { class: "boost", "data-boost": name }, `boost ${name} ${v >= 0 ? "+" : ""}${v.toFixed(3)}`)),
      el("div", { class: "pid" }, item.product_id),
      el("div", { class: "actions" },
        item.pinned ? button("unpin", () => changeOverrides((p, b) => { delete p[item.product_id]; return [p, b]; }))
                    : button("pin", () => changeOverrides((p, b) => {
                        for (const [k, v] of Object.entries(p)) if (v === item.rank) delete p[k];
                        p[item.product_id] = item.rank; return [p, b]; })),
        button("block", () => changeOverrides((p, b) => {
          delete p[item.product_id]; return [p, b.concat([item.product_id])]; }))));
    if (item.pinned) tile.prepend(el("span", { class: "badge pin" }, "pinned"));
    if (item.off_topic) tile.prepend(el("span", { class: "badge", title: "topic fit below " +
                                                  page.topic_fit_threshold.toFixed(2) }, "off-topic?"));
    $("ranking").append(tile);
    imageInto(img, item.product_id);
  }
  state.rankOffset += page.items.length;
  $("more").hidden = state.rankOffset >= page.total_scored;
  if (first) {
    $("counts").textContent = `${page.total_scored} ranked · ${page.pending.length} pending · ` +
      `${page.failed.length} failed · ${page.unknown.length} unknown · model ${page.model_version.slice(0, 12)}`;
    const off = page.off_topic.length;
    $("offtopic").textContent = off === 0 ? "no product looks off-topic" :
      `${off} product${off === 1 ? "" : "s"} look${off === 1 ? "s" : ""} off-topic` +
      (page.all_off_topic ? " (all of them: the first one too)" : "");
    $("offtopic").dataset.count = String(off);
    fillList("pending", page.pending.concat(page.unknown), null);
    fillList("failed", page.failed, true);
  }
}

// A labelled bar of a value in [0, 1] with its number (topic fit, appeal) on a ranking tile.
function bar(label, kind, fraction, text) {
  const fill = el("span", { class: `fill ${kind}` });
  fill.style.width = `${Math.round(Math.max(0, Math.min(1, fraction)) * 100)}%`;
  return el("div", { class: "bar", "data-kind": kind, title: `${label} ${text}` },
    el("span", { class: "label" }, label), el("span", { class: "track" }, fill), el("span", { class: "value" }, text));
}

function fillList(name, ids, withReason) {
  const list = $(name);
  list.replaceChildren();
  $(`${name}-title`).hidden = ids.length === 0;
  for (const pid of ids) {
    const li = el("li", { "data-product-id": pid }, pid);
    list.append(li);
    if (withReason) {
      api(`/products/${encodeURIComponent(pid)}`).then((p) => {
        if (p.error) li.append(": ", el("span", { class: "reason" }, p.error));
      }).catch(() => {});
    }
  }
}

const VIEWS = ["list-view", "detail-view", "experiments-view", "experiment-view"];
function only(view) { for (const v of VIEWS) $(v).hidden = v !== view; }

async function showExperiments() {
  only("experiments-view");
  const list = await api("/experiments");
  const box = $("experiments");
  box.replaceChildren();
  if (!list.items.length) box.append(el("li", { class: "meta" }, "no experiments yet (PUT /experiments/{id})"));
  for (const e of list.items) {
    const arms = e.arms.map((a) => `${a.name} (${a.policy}, ${a.share})`).join(", ");
    box.append(el("li", {}, el("a", { href: `#/experiments/${encodeURIComponent(e.experiment_id)}` }, e.experiment_id),
                  ` — ${e.status}; ${arms}`));
  }
}

const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(2)}%`);
const interval = (ci) => (ci ? `[${pct(ci[0])}, ${pct(ci[1])}]` : "–");

// A plain SVG: one row per arm, the CTR as a dot, its 95% interval as a bar, control's CTR dashed.
function ctrPlot(doc) {
  const ns = "http://www.w3.org/2000/svg";
  const svgEl = (tag, attrs) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    return n;
  };
  const rowH = 28, left = 130, width = 420, height = doc.arms.length * rowH + 30;
  const top = Math.max(0.01, ...doc.arms.map((a) => (a.ctr_ci95 ? a.ctr_ci95[1] : 0))) * 1.1;
  const x = (v) => left + (v / top) * width;
  const svg = svgEl("svg", { width: left + width + 20, height, role: "img", "aria-label": "CTR per arm" });
  const control = doc.arms.find((a) => a.control);
  doc.arms.forEach((a, i) => {
    const y = 15 + i * rowH + rowH / 2;
    const label = svgEl("text", { x: 0, y: y + 4, "font-size": 13 });
    label.textContent = a.arm;
    svg.append(label);
    if (a.ctr_ci95) svg.append(svgEl("line", { x1: x(a.ctr_ci95[0]), x2: x(a.ctr_ci95[1]), y1: y, y2: y,
                                               stroke: a.control ? "#6e6e73" : "#b3261e", "stroke-width": 4 }));
    if (a.ctr !== null) svg.append(svgEl("circle", { cx: x(a.ctr), cy: y, r: 5, fill: "#1d1d1f", "data-arm": a.arm }));
  });
  if (control && control.ctr !== null) {
    svg.append(svgEl("line", { x1: x(control.ctr), x2: x(control.ctr), y1: 5, y2: height - 20, stroke: "#6e6e73",
                               "stroke-dasharray": "4 3" }));
  }
  const axis = svgEl("text", { x: left, y: height - 4, "font-size": 11, fill: "#6e6e73" });
  axis.textContent = `0 … ${pct(top)} CTR`;
  svg.append(axis);
  return svg;
}

async function showExperiment(id) {
  only("experiment-view");
  const doc = await api(`/experiments/${encodeURIComponent(id)}`);
  $("experiment-name").textContent = `Experiment ${doc.experiment_id}`;
  const d = doc.definition;
  $("experiment-meta").textContent = `${d.status}; exhibitions: ${d.exhibitions ? d.exhibitions.join(", ") : "all"}; ` +
    `control: ${doc.control_arm}`;
  const head = el("tr", {}, ...["arm", "policy", "impressions", "clicks", "CTR", "CTR 95%", "P(> control)", "lift",
                                "lift 95%"].map((h) => el("th", {}, h)));
  const rows = doc.arms.map((a) => el("tr", { "data-arm": a.arm },
    ...[a.arm, a.policy, String(a.impressions), String(a.clicks), pct(a.ctr), interval(a.ctr_ci95),
        a.p_beats_control === null ? "–" : a.p_beats_control.toFixed(3), pct(a.lift), interval(a.lift_ci95)]
      .map((c) => el("td", {}, c))));
  $("experiment-table").replaceChildren(head, ...rows);
  $("experiment-plot").replaceChildren(ctrPlot(doc));
}

async function route() {
  $("error").hidden = true;
  const match = location.hash.match(/^#\/exhibitions\/(.+)$/);
  const experiment = location.hash.match(/^#\/experiments\/(.+)$/);
  try {
    if (match) {
      only("detail-view");
      await showExhibition(decodeURIComponent(match[1]));
    } else if (experiment) {
      await showExperiment(decodeURIComponent(experiment[1]));
    } else if (location.hash === "#/experiments") {
      await showExperiments();
    } else {
      only("list-view");
      await showList();
    }
  } catch (err) {
    showError(err);
  }
}

$("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); route(); });
$("next").addEventListener("click", () => { state.offset += PAGE; route(); });
$("diverse-toggle").addEventListener("change", () => showCollage().catch(showError));
$("more").addEventListener("click", () => loadRanking(false).catch(showError));
$("api-key").value = apiKey();
$("api-key").addEventListener("change", (e) => { localStorage.setItem("clik-api-key", e.target.value); route(); });
window.addEventListener("hashchange", route);
showModel();
route();
