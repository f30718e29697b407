// nmt's page: translate through POST /v1/translate and draw the attention as an SVG heatmap.
// Rows are target units (subword pieces, or words), columns source units; hovering or tapping a target label (or
// a cell of its row) highlights the source units it attends to, and a source label the target units attending to
// it. The hooks tests use are listed in README.md beside this file.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const EOS = "</s>";
const CELL = 26;
const $ = (id) => document.getElementById(id);

const page = {
  models: [],       // GET /v1/models
  result: null,     // the last POST /v1/translate answer
  selected: 0,      // the sentence shown in the n-best list and the heatmap
  view: null,       // what the heatmap shows: {matrix, src, trg}
};

function setState(state, status = "") {
  document.body.dataset.state = state;
  $("status").textContent = status;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  setState("error");
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// An API error in plain words: the server's own message ({"error": "..."}), and what the status means.
async function describeError(response) {
  let detail = "";
  try {
    const body = await response.json();
    detail = typeof body.error === "string" ? body.error : "";
  } catch (e) {
    detail = "";
  }
  const what = {
    400: "The request was refused",
    403: "Access was refused",
    413: "The request is too large",
    422: "The request has an invalid setting",
    503: "The server is busy, try again in a moment",
    504: "The translation took too long",
  }[response.status] || `The server answered ${response.status} ${response.statusText}`;
  return detail ? `${what}: ${detail}.` : `${what}.`;
}

async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(await describeError(response));
  return response.json();
}

async function loadModels() {
  try {
    const [models, health] = await Promise.all([getJSON("/v1/models"), getJSON("/health")]);
    page.models = models;
    const select = $("model");
    select.replaceChildren(...models.map((m) => {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = `${m.name} (${m.source} → ${m.target}, ${m.design})`;
      return option;
    }));
    $("key-field").hidden = !health.api_key_required;
    modelChanged();
    setState("ready");
  } catch (e) {
    showError(e.message || String(e));
  }
}

function currentModel() {
  return page.models.find((m) => m.name === $("model").value) || page.models[0];
}

function modelChanged() {
  const m = currentModel();
  if (!m) return;
  const beam = Number(m.decode.beam_size);
  $("beam").value = beam > 1 ? beam : 5;
  const scores = Object.entries(m.scores || {}).map(([split, s]) =>
    `${split} ${"bleu" in s ? `BLEU ${s.bleu.toFixed(2)}` : ""}`.trim()).join(", ");
  $("model-info").textContent = `${m.arch}, ${m.parameters.toLocaleString()} parameters` +
    (scores ? `; ${scores}` : "");
}

async function translate(event) {
  event.preventDefault();
  clearError();
  const lines = $("source").value.split("\n");
  if (!lines.some((line) => line.trim())) {
    showError("Nothing to translate: type a sentence first.");
    return;
  }
  const beam = Number($("beam").value);
  const body = {
    model: $("model").value,
    sentences: lines,
    beam_size: beam,
    nbest: Math.min(beam, 5),
    attention: $("show-attention").checked,
  };
  if ($("api-key").value) body.api_key = $("api-key").value;
  setState("busy", "translating…");
  $("translate").disabled = true;
  try {
    let response;
    try {
      response = await fetch("/v1/translate", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify(body),
      });
    } catch (e) {
      showError(`Cannot reach the server: ${e.message || e}.`);
      return;
    }
    if (!response.ok) {
      showError(await describeError(response));
      return;
    }
    page.result = await response.json();
    page.selected = Math.max(0, page.result.translations.findIndex((t) => t.src_pieces.length > 0));
    showResult();
    setState("done");
  } finally {
    $("translate").disabled = false;
  }
}

function showResult() {
  const result = page.result;
  $("output-panel").hidden = false;
  $("translation").replaceChildren(...result.translations.map((t, k) => {
    const item = document.createElement("li");
    item.textContent = t.text;
    item.dataset.sentenceIndex = k;
    item.tabIndex = 0;
    item.classList.toggle("selected", k === page.selected);
    const pick = () => { page.selected = k; showResult(); };
    item.addEventListener("click", pick);
    item.addEventListener("keydown", (e) => { if (e.key === "Enter") pick(); });
    return item;
  }));
  const t = result.translations[page.selected];
  $("nbest").replaceChildren(...t.nbest.map((h, rank) => {
    const item = document.createElement("li");
    item.dataset.rank = rank;
    const text = document.createElement("span");
    text.className = "hyp";
    text.textContent = h.text;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = h.score.toFixed(3);
    item.append(text, " ", score);
    return item;
  }));
  $("alignment").textContent = t.alignment;
  setUpViewControls(t);
  drawHeatmap();
}

function setUpViewControls(t) {
  const heads = t.attention_heads;
  $("layer-field").hidden = $("head-field").hidden = !heads;
  if (!heads) return;
  const layer = $("layer");
  if (layer.options.length !== heads.length) {
    layer.replaceChildren(...heads.map((_, i) => new Option(String(i + 1), String(i))));
    layer.value = String(heads.length - 1);
  }
  const head = $("head");
  if (head.options.length !== heads[0].length + 1) {
    head.replaceChildren(new Option("mean", "mean"), ...heads[0].map((_, i) => new Option(String(i + 1), String(i))));
    head.value = "mean";
  }
}

// The matrix to draw, [target units][source units], with the units' labels.
function currentView(t) {
  let matrix = t.attention;
  if (t.attention_heads) {
    const layer = t.attention_heads[Number($("layer").value)];
    const head = $("head").value;
    matrix = head === "mean"
      ? layer[0].map((row, r) => row.map((_, c) => layer.reduce((sum, h) => sum + h[r][c], 0) / layer.length))
      : layer[Number(head)];
  }
  if (!matrix) return null;
  if ($("units").value === "words") {
    return {
      matrix: mergeWords(matrix, t.src_word_ids, t.trg_word_ids),
      src: t.src_words,
      trg: t.trg_words,
    };
  }
  return {matrix, src: [...t.src_pieces, EOS], trg: [...t.trg_pieces, EOS], scores: t.token_scores};
}

// Subword attention merged into words as nmt.words.word_attention does: a source word sums its pieces' columns,
// a target word averages its pieces' rows; the EOS row and column are dropped.
function mergeWords(matrix, srcIds, trgIds) {
  const nSrc = Math.max(...srcIds) + 1;
  const nTrg = Math.max(...trgIds) + 1;
  const out = Array.from({length: nTrg}, () => new Array(nSrc).fill(0));
  const counts = new Array(nTrg).fill(0);
  trgIds.forEach((tw, r) => {
    counts[tw] += 1;
    srcIds.forEach((sw, c) => { out[tw][sw] += matrix[r][c]; });
  });
  return out.map((row, tw) => row.map((v) => v / counts[tw]));
}

function svgElement(name, attributes, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function color(weight) {
  const w = Math.max(0, Math.min(1, weight));
  const shade = (from, to) => Math.round(from + (to - from) * w);
  return `rgb(${shade(247, 8)}, ${shade(251, 48)}, ${shade(255, 107)})`;
}

function drawHeatmap() {
  const container = $("heatmap");
  const t = page.result && page.result.translations[page.selected];
  const view = t && currentView(t);
  $("attention-panel").hidden = !view;
  if (!view) {
    container.replaceChildren();
    return;
  }
  const {matrix, src, trg} = view;
  const charWidth = 8;
  const left = 12 + charWidth * Math.max(...trg.map((s) => s.length), 3);
  const top = 12 + charWidth * 0.9 * Math.max(...src.map((s) => s.length), 3);
  const width = left + CELL * src.length + 10;
  const height = top + CELL * trg.length + 10;
  const svg = svgElement("svg", {width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "attention heatmap"});

  src.forEach((label, i) => {
    const x = left + CELL * i + CELL / 2;
    const text = svgElement("text", {class: "label src-label", "data-src-index": i, tabindex: 0,
      transform: `translate(${x}, ${top - 6}) rotate(-60)`}, label);
    text.addEventListener("mouseenter", () => highlightSource(i));
    text.addEventListener("focus", () => highlightSource(i));
    text.addEventListener("click", () => highlightSource(i));
    svg.append(text);
  });
  trg.forEach((label, j) => {
    const y = top + CELL * j + CELL / 2 + 4;
    const text = svgElement("text", {class: "label trg-label", "data-trg-index": j, tabindex: 0,
      x: left - 6, y, "text-anchor": "end"}, label);
    if (view.scores) text.append(svgElement("title", {}, `log-probability ${view.scores[j].toFixed(3)}`));
    text.addEventListener("mouseenter", () => highlightTarget(j));
    text.addEventListener("focus", () => highlightTarget(j));
    text.addEventListener("click", () => highlightTarget(j));
    svg.append(text);
  });
  matrix.forEach((row, j) => row.forEach((weight, i) => {
    const cell = svgElement("rect", {class: "cell", "data-trg-index": j, "data-src-index": i,
      "data-weight": weight, x: left + CELL * i, y: top + CELL * j, width: CELL - 1, height: CELL - 1,
      fill: color(weight)});
    cell.append(svgElement("title", {}, `${trg[j]} → ${src[i]}: ${weight.toFixed(3)}`));
    cell.addEventListener("mouseenter", () => highlightTarget(j));
    cell.addEventListener("click", () => highlightTarget(j));
    svg.append(cell);
  }));
  svg.addEventListener("mouseleave", clearHighlight);
  container.replaceChildren(svg);
  page.view = view;
}

function clearHighlight() {
  document.querySelectorAll("#heatmap .highlight, #heatmap .active").forEach((el) => {
    el.classList.remove("highlight", "active");
  });
  document.querySelectorAll("#heatmap .label").forEach((el) => el.style.removeProperty("fill-opacity"));
}

// Shade each label of `kind` ("src" or "trg") by its weight, and give the strongest the `highlight` class.
function markLabels(kind, weights) {
  const best = Math.max(...weights);
  document.querySelectorAll(`#heatmap .${kind}-label`).forEach((el) => {
    const w = weights[Number(el.dataset[`${kind}Index`])];
    el.style.fillOpacity = String(0.35 + 0.65 * w / (best || 1));
    el.classList.toggle("highlight", w === best);
  });
}

function highlightTarget(j) {
  clearHighlight();
  document.querySelector(`#heatmap .trg-label[data-trg-index="${j}"]`).classList.add("active");
  document.querySelectorAll(`#heatmap .cell[data-trg-index="${j}"]`).forEach((el) => el.classList.add("active"));
  markLabels("src", page.view.matrix[j]);
}

function highlightSource(i) {
  clearHighlight();
  document.querySelector(`#heatmap .src-label[data-src-index="${i}"]`).classList.add("active");
  document.querySelectorAll(`#heatmap .cell[data-src-index="${i}"]`).forEach((el) => el.classList.add("active"));
  markLabels("trg", page.view.matrix.map((row) => row[i]));
}

document.addEventListener("DOMContentLoaded", () => {
  $("form").addEventListener("submit", translate);
  $("source").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("form").requestSubmit();
  });
  $("model").addEventListener("change", modelChanged);
  for (const id of ["units", "layer", "head"]) $(id).addEventListener("change", drawHeatmap);
  loadModels();
});
