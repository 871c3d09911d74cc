// The crossrec page: plain JavaScript over the HTTP API, no build step.
// Every value from the server is put in the page as text (textContent), never as HTML.
"use strict";

const K = 10;
const SIMILAR_K = 8;
const state = { user: null, key: "", view: null };
const $ = (selector, root = document) => root.querySelector(selector);
const enc = encodeURIComponent;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const text = await response.text();
  let body = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: keep the text
  }
  if (!response.ok) {
    let detail = body && body.detail !== undefined ? body.detail : response.statusText;
    if (Array.isArray(detail)) detail = detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    const error = new Error(`${response.status}: ${detail}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function status(message, kind = "info") {
  const line = $("#status");
  line.textContent = message;
  line.dataset.kind = kind;
}

function nameOf(item) {
  return item.title || `item ${item.item_id}`;
}

function placeholder(item) {
  const words = nameOf(item).replace(/\(\d{4}\)\s*$/, "").split(/\s+/).filter(Boolean);
  const initials = words.slice(0, 2).map((w) => w[0].toUpperCase()).join("");
  return el("div", { class: "placeholder", "aria-hidden": "true" }, initials || "?");
}

function poster(item) {
  if (!item.image) return placeholder(item);
  const img = el("img", {
    class: "poster",
    src: `/items/${enc(item.item_id)}/poster`,
    alt: `poster of ${nameOf(item)}`,
  });
  img.addEventListener("error", () => img.replaceWith(placeholder(item)), { once: true });
  return img;
}

// ---- one result ---------------------------------------------------------------------------------
function card(item, { fresh = false } = {}) {
  const li = el("li", { class: fresh ? "result fresh" : "result", "data-item-id": item.item_id });
  const why = el("button", {
    type: "button",
    class: "quiet",
    "data-action": "why",
    "aria-pressed": "false",
    disabled: !state.user,
    title: state.user ? `why this item for user ${state.user}?` : "pick a user first",
    onclick: () => toggleFacts(li, item, why),
  }, "why?");
  const like = el("button", {
    type: "button",
    class: "quiet",
    "data-action": "like",
    disabled: !state.user,
    title: state.user ? `user ${state.user} likes this` : "pick a user first",
    onclick: () => likeItem(item, like),
  }, "like");
  const similar = el("button", {
    type: "button",
    class: "quiet",
    "data-action": "similar",
    onclick: () => showSimilar(item),
  }, "similar");
  li.append(
    poster(item),
    el("div", {},
      el("div", { class: "title" }, nameOf(item), fresh ? el("span", { class: "badge" }, "new") : null),
      el("div", { class: "meta" }, `id ${item.item_id} · score ${item.score.toFixed(3)}`),
      el("div", { class: "actions" }, why, like, similar),
    ),
  );
  return li;
}

function render(section, heading, items, previous = null) {
  const root = $(section);
  $("h2", root).textContent = heading;
  const list = $(".cards", root);
  const before = previous ? new Set(previous) : null;
  list.replaceChildren(...items.map((item) => card(item, { fresh: before !== null && !before.has(item.item_id) })));
  if (!items.length) list.append(el("li", { class: "muted" }, "nothing found"));
}

function shownIds(section = "#results") {
  return [...document.querySelectorAll(`${section} .result`)].map((li) => li.dataset.itemId);
}

// ---- views --------------------------------------------------------------------------------------
async function showRecommendations(user, { previous = null } = {}) {
  state.user = user;
  const data = await api(`/users/${enc(user)}/recommendations?k=${K}`);
  state.view = { kind: "recommendations", user };
  render("#results", `Recommended for user ${user}`, data.items, previous);
  return data.items;
}

async function searchText(query) {
  const data = await api("/search/text", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query, k: K }),
  });
  state.view = { kind: "text", query };
  render("#results", `Search: “${query}”`, data.items);
  return data.items;
}

async function searchMedia(file) {
  const modality = file.type.startsWith("image/") ? "image" : file.type.startsWith("audio/") ? "audio" : null;
  if (!modality) throw new Error(`'${file.name}' is neither an image nor an audio file (${file.type || "unknown type"})`);
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("modality", modality);
  form.append("k", String(K));
  const data = await api("/search/media", { method: "POST", body: form });
  state.view = { kind: "media", name: file.name };
  render("#results", `Items like ${file.name} (${modality})`, data.items);
  return data.items;
}

async function showSimilar(item) {
  try {
    const data = await api(`/items/${enc(item.item_id)}/similar?k=${SIMILAR_K}`);
    $("#similar").hidden = false;
    $("main").classList.add("with-similar");
    render("#similar", `Similar to ${nameOf(item)}`, data.items);
    status(`${data.items.length} items similar to ${nameOf(item)}`, "done");
  } catch (error) {
    status(`similar items: ${error.message}`, "error");
  }
}

function factLines(facts) {
  const lines = [];
  for (const [field, terms] of Object.entries(facts.shared || {})) {
    if (terms.length) lines.push(`Shares ${field} with your history: ${terms.slice(0, 6).join(", ")}`);
  }
  const nearest = facts.nearest_liked || {};
  for (const [modality, liked] of Object.entries(nearest)) {
    // "genres_shared" (the shared space) repeats "genres" here: shown only without it
    if (!liked.length || (modality.endsWith("_shared") && modality.replace(/_shared$/, "") in nearest)) continue;
    const titles = liked.map((l) => `${l.title || l.item_id} (${l.similarity.toFixed(2)})`).join(", ");
    lines.push(`Close by ${modality} to what you liked: ${titles}`);
  }
  if (facts.closest_modality) lines.push(`Closest in: ${facts.closest_modality}`);
  const pop = facts.popularity;
  if (pop) {
    lines.push(`Popularity: #${pop.rank.toLocaleString()} of ${pop.of.toLocaleString()} (${pop.interactions.toLocaleString()} interactions)`);
  }
  return lines.length ? lines : ["No shared facts with this user's history."];
}

const SOURCES = {
  llm: "written by the language model",
  cache: "written by the language model (cached)",
  template: "written by the template",
};
const RETRIES = 10; // while the model is still generating: ask again every 2 s, this many times

function sourceLine(explanation) {
  const who = SOURCES[explanation.source] || explanation.source;
  return explanation.reason ? `${who}: ${explanation.reason}` : who;
}

function explanationBlock(explanation) {
  return el("div", { class: "explanation", "data-source": explanation.source },
    el("p", { class: "sentence" }, explanation.text),
    el("p", { class: "source muted" }, sourceLine(explanation)),
  );
}

async function toggleFacts(li, item, button) {
  const open = $(".facts", li);
  if (open) {
    open.remove();
    button.setAttribute("aria-pressed", "false");
    return;
  }
  button.setAttribute("aria-pressed", "true");
  const path = `/users/${enc(state.user)}/recommendations/${enc(item.item_id)}/explanation`;
  try {
    const body = await api(path);
    const panel = el("div", { class: "facts" },
      explanationBlock(body.explanation),
      el("ul", {}, factLines(body.facts).map((line) => el("li", {}, line))),
    );
    li.append(panel);
    // The model's sentence lands in the server's cache while the template stands in: fetch it then.
    let explanation = body.explanation;
    for (let tries = 0; explanation.reason === "still generating" && tries < RETRIES; tries += 1) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      if (!panel.isConnected) return;
      explanation = (await api(`${path}?explain_wait_s=0`)).explanation;
      if (!panel.isConnected) return;
      $(".explanation", panel).replaceWith(explanationBlock(explanation));
    }
  } catch (error) {
    if (!$(".facts", li)) button.setAttribute("aria-pressed", "false");
    status(`why: ${error.message}`, "error");
  }
}

async function likeItem(item, button) {
  if (!state.key) {
    status("Type the API key (top right) to send feedback.", "error");
    $("#api-key").focus();
    return;
  }
  button.disabled = true;
  try {
    await api("/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-API-Key": state.key },
      body: JSON.stringify({ events: [{ user_id: state.user, item_id: item.item_id, kind: "click", value: 1 }] }),
    });
    const previous = shownIds();
    await showRecommendations(state.user, { previous });
    const fresh = shownIds().filter((id) => !previous.includes(id)).length;
    status(`Liked ${nameOf(item)}: user ${state.user}'s list was refolded (${fresh} new).`, "done");
  } catch (error) {
    button.disabled = false;
    status(`like: ${error.message}`, "error");
  }
}

// ---- wiring -------------------------------------------------------------------------------------
async function run(label, task) {
  status(`${label}…`);
  try {
    const items = await task();
    status(`${label}: ${items.length} results`, "done");
  } catch (error) {
    status(`${label}: ${error.message}`, "error");
  }
}

function pickUser(user) {
  $("#user").value = user;
  run(`recommendations for user ${user}`, () => showRecommendations(user));
}

function setUp() {
  $("#api-key").addEventListener("input", (event) => {
    state.key = event.target.value; // memory only: never stored
  });
  $("#user-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const user = $("#user").value.trim();
    if (user) pickUser(user);
  });
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = $("#query").value.trim();
    if (query) run(`search “${query}”`, () => searchText(query));
  });
  const drop = $("#drop");
  const file = $("#file");
  const take = (files) => {
    if (files && files.length) run(`search by ${files[0].name}`, () => searchMedia(files[0]));
  };
  drop.addEventListener("click", () => file.click());
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") file.click();
  });
  file.addEventListener("change", () => {
    take(file.files);
    file.value = "";
  });
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    take(event.dataTransfer.files);
  });

  api("/health")
    .then((h) => {
      $("#health").textContent = `${h.model} · ${h.users.toLocaleString()} users · ${h.items.toLocaleString()} items`;
    })
    .catch((error) => {
      $("#health").textContent = `server: ${error.message}`;
    });
  api("/users?limit=20")
    .then((data) => {
      $("#user-ids").replaceChildren(...data.users.map((u) => el("option", { value: u })));
      $("#examples").replaceChildren(
        el("span", { class: "muted" }, "e.g."),
        ...data.users.slice(0, 8).map((u) => el("button", { type: "button", onclick: () => pickUser(u) }, u)),
      );
    })
    .catch(() => {});
}

document.addEventListener("DOMContentLoaded", setUp);
