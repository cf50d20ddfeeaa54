// The dashboard: its data from /play/dashboard every few seconds, its charts as PNGs drawn by the server.
"use strict";

const $ = (id) => document.getElementById(id);
const LANGUAGES = ["en", "zh"];

function cell(tag, text, className) {
  const node = document.createElement(tag);
  node.textContent = text ?? "–";
  if (className) node.className = className;
  return node;
}

function rows(tbody, list) {
  tbody.replaceChildren(...list.map((cells) => {
    const tr = document.createElement("tr");
    tr.append(...cells);
    return tr;
  }));
}

function render(data) {
  const stamp = encodeURIComponent(data.generated_at);
  for (const name of ["timeline", "review", "recall"]) $(`chart-${name}`).src = `/play/chart/${name}.png?at=${stamp}`;
  $("updated").textContent = `updated ${new Date(data.generated_at).toLocaleTimeString()}`;

  const timeline = data.timeline.languages;
  $("figures").replaceChildren(...LANGUAGES.map((language) => {
    const figure = cell("div", "", "figure");
    const total = timeline[language].total;
    figure.replaceChildren(cell("b", String(total.length ? total[total.length - 1] : 0)),
                           cell("span", `${language} queries written by players`));
    return figure;
  }));

  $("review-size").replaceChildren(document.createTextNode(String(data.review.needs_review)),
                                   cell("small", `need review · ${data.review.contexts_waiting} chat contexts waiting`));

  rows($("recent").tBodies[0], data.recent.map((q) => [
    cell("td", q.language), cell("td", q.text), (() => { const td = cell("td", ""); td.append(cell("span", q.status, `status ${q.status}`)); return td; })(),
    cell("td", new Date(q.created_at).toLocaleTimeString()),
  ]));

  $("leaderboards").replaceChildren(...LANGUAGES.map((language) => {
    const box = document.createElement("div");
    const table = document.createElement("table");
    const body = table.createTBody();
    const board = data.leaderboards[language];
    rows(body, board.length ? board.map((r) => [cell("td", `${r.rank}.`), cell("td", r.name), cell("td", String(r.points), "num")])
                            : [[cell("td", "no points yet")]]);
    box.append(cell("h3", language), table);
    return box;
  }));

  const stats = data.statistics;
  const statRows = [["stickers", "stickers"], ["queries", "queries"], ["queries per sticker", "queries_per_sticker"],
                    ["tokens per query", "tokens_per_query"], ["vocabulary", "vocabulary_size"]];
  rows($("statistics").tBodies[0], [
    ...statRows.map(([label, key]) => [cell("td", label), ...LANGUAGES.map((l) => cell("td", String(stats[l][key] ?? "–"), "num"))]),
    [cell("td", "most frequent"), ...LANGUAGES.map((l) => cell("td", stats[l].most_frequent_terms.slice(0, 5).map((t) => t[0]).join(", ")))],
  ]);

  renderPartners(data.partners || {});

  const metrics = data.metrics;
  if (!metrics) {
    $("export-note").textContent = "No export yet: the first one is being made.";
    rows($("metrics").tBodies[0], []);
    return;
  }
  $("export-note").textContent = `Export ${metrics.version} (made ${new Date(metrics.generated_at).toLocaleString()}), metrics.json:`;
  const value = (l, part, key) => String(((metrics.languages[l] || {})[part] || {})[key] ?? "–");
  const keys = Object.keys((metrics.languages.en || {}).bm25_retrieval || {}).filter((k) => k.startsWith("recall@"));
  const similarity = Object.keys((metrics.languages.en || {}).lexical_similarity || {})
    .filter((k) => typeof metrics.languages.en.lexical_similarity[k] === "number");
  rows($("metrics").tBodies[0], [
    ...keys.map((k) => [cell("td", `BM25 ${k}`), ...LANGUAGES.map((l) => cell("td", value(l, "bm25_retrieval", k), "num"))]),
    [cell("td", "test queries"), ...LANGUAGES.map((l) => cell("td", value(l, "bm25_retrieval", "test_queries"), "num"))],
    ...similarity.map((k) => [cell("td", k.replaceAll("_", " ")), ...LANGUAGES.map((l) => cell("td", value(l, "lexical_similarity", k), "num"))]),
  ]);
}

// Humans against each partner model on the rounds both answered (core/partner_figures.py).
function renderPartners(partners) {
  const models = [...new Set(LANGUAGES.flatMap((l) => Object.keys(partners[l] || {})))].sort();
  const figure = (l, model, key) => ((partners[l] || {})[model] || {})[key];
  const lines = [["rounds", "rounds"], ["human_recall_at_1", "human Recall@1"], ["model_recall_at_1", "model Recall@1"],
    ["human_recall_at_3", "human Recall@3"], ["model_recall_at_3", "model Recall@3"],
    ["human_found_model_missed", "human found, model missed"], ["model_found_human_missed", "model found, human missed"]];
  rows($("partners").tBodies[0], models.length ? models.flatMap((model) => lines.map(([key, label]) => [
    cell("td", `${model}: ${label}`), ...LANGUAGES.map((l) => cell("td", String(figure(l, model, key) ?? "–"), "num"))]))
    : [[cell("td", "no round answered by both yet"), cell("td", "–", "num"), cell("td", "–", "num")]]);
}

async function refresh() {
  try {
    const response = await fetch("/play/dashboard");
    render(await response.json());
  } catch (error) {
    $("updated").textContent = `not updated: ${error.message}`;
  }
}

refresh();
setInterval(refresh, 5000);
