// nmt's page: translate through POST /v1/translate and draw the attention, or the gradient flow through time
// (||d log p(y_i) / d e_j||, on a log scale), as an SVG heatmap, with the same values in a table for screen
// readers (shown on request). Rows are target units (subword pieces, or words), columns source
// units; hovering, tapping or focusing a target label (or hovering a cell of its row) highlights the source units it
// attends to, and a source label the target units attending to it. The inputs are bounded by the server's own
// limits (GET /v1/limits): a request the server would refuse for them is refused here, before it is sent. The hooks
// tests use are listed in README.md beside this file.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const EOS = "</s>";
const CELL = 26;
const DECADES = 4;  // the gradient view's colour scale: from the largest norm down to 10^-DECADES of it
const $ = (id) => document.getElementById(id);

const page = {
  models: [],       // GET /v1/models
  limits: null,     // GET /v1/limits
  counterTimer: 0,  // the pending update of the counter's screen-reader twin
  result: null,     // the last POST /v1/translate answer
  selected: 0,      // the sentence shown in the n-best list and the heatmap
  view: null,       // what the heatmap shows: {matrix, src, trg, unit, scores}
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
    const [models, health, limits] = await Promise.all([getJSON("/v1/models"), getJSON("/health"),
      getJSON("/v1/limits")]);
    page.models = models;
    page.limits = limits;
    const select = $("model");
    select.replaceChildren(...models.map((m) => {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = `${m.name} (${m.source} → ${m.target}, ${m.design})`;
      return option;
    }));
    $("key-field").hidden = !health.api_key_required;
    applyLimits();
    modelChanged();
    $("translate").disabled = false;
    setState("ready");
  } catch (e) {
    showError(e.message || String(e));
  }
}

const formatNumber = (n) => n.toLocaleString("en");

// Characters as the server counts them (code points, not UTF-16 units).
const characters = (text) => [...text].length;

// The inputs offer no more than the server takes: the beam size and n-best up to its limits, and the text box up
// to its sentences per request of its characters per sentence (each line is a sentence).
function applyLimits() {
  const limits = page.limits;
  $("beam").max = limits.max_beam;
  $("nbest-size").max = limits.max_nbest;
  $("source").maxLength = limits.max_sentences * (limits.max_chars + 1) - 1;
  updateCounter(true);
}

function currentModel() {
  return page.models.find((m) => m.name === $("model").value) || page.models[0];
}

function modelChanged() {
  const m = currentModel();
  if (!m) return;
  const beam = Math.min(Number(m.decode.beam_size) > 1 ? Number(m.decode.beam_size) : 5, page.limits.max_beam);
  $("beam").value = beam;
  $("nbest-size").value = Math.min(beam, 5, page.limits.max_nbest);
  const scores = Object.entries(m.scores || {}).map(([split, s]) =>
    `${split} ${"bleu" in s ? `BLEU ${s.bleu.toFixed(2)}` : ""}`.trim()).join(", ");
  $("model-info").textContent = `${m.arch}, ${m.parameters.toLocaleString()} parameters` +
    (m.engine === "ctranslate2" ? ", on CTranslate2" : "") + (scores ? `; ${scores}` : "");
  // The server refuses gradients where the model has no backward pass.
  const noGradients = m.engine === "ctranslate2" || Boolean(m.quantize);
  $("show-gradients").disabled = noGradients;
  if (noGradients) $("show-gradients").checked = false;
}

// "42 / 1,000 characters" for the longest line (and the lines, when there are several), with data-level "near" from
// 90% of a limit and "over" past one. Screen readers hear it through a twin updated once typing pauses.
function updateCounter(now = false) {
  const limits = page.limits;
  if (!limits) return;
  const lines = $("source").value.split("\n");
  const longest = lines.reduce((most, line) => Math.max(most, characters(line)), 0);
  let text = `${formatNumber(longest)} / ${formatNumber(limits.max_chars)} characters`;
  if (lines.length > 1) {
    text = `longest line ${text}, ${formatNumber(lines.length)} / ${formatNumber(limits.max_sentences)} lines`;
  }
  const over = longest > limits.max_chars || lines.length > limits.max_sentences;
  const near = longest >= 0.9 * limits.max_chars || lines.length >= limits.max_sentences;
  const counter = $("char-count");
  counter.textContent = text;
  counter.dataset.level = over ? "over" : near ? "near" : "";
  const spoken = over ? `${text}: over this server's limit` : near ? `${text}: near this server's limit` : text;
  clearTimeout(page.counterTimer);
  if (now) {
    $("char-count-sr").textContent = spoken;
  } else {
    page.counterTimer = setTimeout(() => { $("char-count-sr").textContent = spoken; }, 800);
  }
}

// The value of a number input if it is a whole number, else NaN.
function wholeNumber(id) {
  const value = $(id).value.trim();
  return /^\d+$/.test(value) ? Number(value) : NaN;
}

// What in the form the server would refuse, as {field, message}; null when nothing.
function problemWith(lines) {
  const limits = page.limits;
  const beam = wholeNumber("beam");
  if (!(beam >= 1 && beam <= limits.max_beam)) {
    return {field: "beam", message: `Beam size must be a whole number from 1 to ${limits.max_beam} (this ` +
      "server's limit)."};
  }
  const nbest = wholeNumber("nbest-size");
  if (!(nbest >= 1 && nbest <= limits.max_nbest)) {
    return {field: "nbest-size", message: `N-best must be a whole number from 1 to ${limits.max_nbest} (this ` +
      "server's limit)."};
  }
  if (nbest > beam) {
    return {field: "nbest-size", message: `N-best (${nbest}) cannot exceed the beam size (${beam}).`};
  }
  if (!lines.some((line) => line.trim())) {
    return {field: "source", message: "Nothing to translate: type a sentence first."};
  }
  if (lines.length > limits.max_sentences) {
    return {field: "source", message: `There are ${formatNumber(lines.length)} lines; this server translates ` +
      `at most ${formatNumber(limits.max_sentences)} in one request.`};
  }
  const long = lines.findIndex((line) => characters(line) > limits.max_chars);
  if (long >= 0) {
    return {field: "source", message: `Line ${long + 1} has ${formatNumber(characters(lines[long]))} ` +
      `characters; this server takes at most ${formatNumber(limits.max_chars)} per line.`};
  }
  return null;
}

function refuse({field, message}) {
  showError(message);
  $(field).setAttribute("aria-invalid", "true");
  $(field).focus();
}

async function translate(event) {
  event.preventDefault();
  if (!page.limits) return;
  clearError();
  document.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  const lines = $("source").value.split("\n");
  const problem = problemWith(lines);
  if (problem) {
    refuse(problem);
    return;
  }
  const body = {
    model: $("model").value,
    sentences: lines,
    beam_size: wholeNumber("beam"),
    nbest: wholeNumber("nbest-size"),
    attention: $("show-attention").checked,
    gradients: $("show-gradients").checked,
  };
  if ($("api-key").value) body.api_key = $("api-key").value;
  const json = JSON.stringify(body);
  const bytes = new TextEncoder().encode(json).length;
  if (bytes > page.limits.max_body_bytes) {
    refuse({field: "source", message: `The request would be ${formatNumber(bytes)} bytes; this server takes at ` +
      `most ${formatNumber(page.limits.max_body_bytes)}.`});
    return;
  }
  setState("busy", "translating…");
  $("translate").disabled = true;
  try {
    let response;
    try {
      response = await fetch("/v1/translate", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: json,
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
    $("copy-status").textContent = "";
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
    if (k === page.selected) item.setAttribute("aria-current", "true");
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

// Copy every translated line: through the Clipboard API where the page is a secure context (https, or this
// machine), else by selecting the text in a scratch box for the browser's copy command.
async function copyTranslation() {
  const status = $("copy-status");
  status.textContent = "";
  const text = page.result.translations.map((t) => t.text).join("\n");
  let copied = false;
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch (e) {
      copied = false;
    }
  }
  if (!copied) copied = copyBySelection(text);
  status.textContent = copied ? "Copied" : "Could not copy: select the translation and press Ctrl+C";
}

function copyBySelection(text) {
  const scratch = document.createElement("textarea");
  scratch.value = text;
  scratch.readOnly = true;
  scratch.className = "scratch";
  document.body.append(scratch);
  scratch.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch (e) {
    copied = false;
  }
  scratch.remove();
  $("copy").focus();
  return copied;
}

function setUpViewControls(t) {
  const matrix = $("matrix");
  matrix.querySelector('[value="attention"]').disabled = !t.attention;
  matrix.querySelector('[value="gradients"]').disabled = !t.gradients;
  if (!(matrix.value === "gradients" ? t.gradients : t.attention)) {
    matrix.value = t.attention ? "attention" : "gradients";
  }
  const gradients = matrix.value === "gradients";
  $("view-title").textContent = gradients ? "Gradient flow" : "Attention";
  $("view-help").textContent = gradients
    ? "How strongly each source word can still move each translated word: ||d log p(y_i) / d e_j||, darker is " +
      `larger, on a log scale over ${DECADES} orders of magnitude.`
    : "Hover, tap or Tab to a word: rows are the translation, columns the source.";
  const heads = gradients ? null : t.attention_heads;
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

// The matrix to draw, [target units][source units], with the units' labels: attention weights, or gradient norms
// mapped to [0, 1] on a log scale (``raw`` keeps the norms, for the labels and the table).
function currentView(t) {
  if ($("matrix").value === "gradients" && t.gradients) return gradientView(t);
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
      unit: "word",
    };
  }
  return {matrix, src: [...t.src_pieces, EOS], trg: [...t.trg_pieces, EOS], scores: t.token_scores,
    unit: "subword"};
}

function gradientView(t) {
  const words = $("units").value === "words";
  const raw = words ? mergeWords(t.gradients, t.src_word_ids, t.trg_word_ids) : t.gradients;
  const top = Math.max(...raw.flat(), 1e-30);
  const matrix = raw.map((row) => row.map((g) => Math.max(0, 1 + Math.log10(Math.max(g, 1e-30) / top) / DECADES)));
  const src = words ? t.src_words : [...t.src_pieces, EOS];
  const trg = words ? t.trg_words : [...t.trg_pieces, EOS];
  return {matrix, raw, src, trg, unit: words ? "word" : "subword", gradients: true};
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

const argmax = (values) => values.reduce((best, v, k) => (v > values[best] ? k : best), 0);

function drawHeatmap() {
  const container = $("heatmap");
  const t = page.result && page.result.translations[page.selected];
  const view = t && currentView(t);
  $("attention-panel").hidden = !view;
  if (!view) {
    container.replaceChildren();
    $("attention-table-box").replaceChildren();
    return;
  }
  const {matrix, src, trg, unit} = view;
  const what = view.gradients ? "gradient flow" : "attention";
  const shown = (j, i) => (view.raw ? view.raw[j][i].toExponential(2) : matrix[j][i].toFixed(2));
  const charWidth = 8;
  const left = 12 + charWidth * Math.max(...trg.map((s) => s.length), 3);
  const top = 12 + charWidth * 0.9 * Math.max(...src.map((s) => s.length), 3);
  const width = left + CELL * src.length + 10;
  const height = top + CELL * trg.length + 10;
  const svg = svgElement("svg", {width, height, viewBox: `0 0 ${width} ${height}`, role: "group",
    "aria-label": `${what} heatmap, ${trg.length} translation ${unit}s by ${src.length} source ${unit}s ` +
      `(the table of ${what} values has the same numbers)`});

  // Each label is a button that highlights its row or column; its name says which unit of the other side it
  // shares the most attention with.
  const label = (attributes, text, name, highlight) => {
    const el = svgElement("text", {...attributes, tabindex: 0, role: "button", "aria-label": name}, text);
    el.addEventListener("mouseenter", highlight);
    el.addEventListener("focus", highlight);
    el.addEventListener("click", highlight);
    el.addEventListener("blur", (e) => { if (!svg.contains(e.relatedTarget)) clearHighlight(); });
    el.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        highlight();
      }
    });
    return el;
  };
  src.forEach((text, i) => {
    const column = matrix.map((row) => row[i]);
    const best = argmax(column);
    const x = left + CELL * i + CELL / 2;
    svg.append(label({class: "label src-label", "data-src-index": i,
      transform: `translate(${x}, ${top - 6}) rotate(-60)`}, text,
    `${text}, source ${unit} ${i + 1} of ${src.length}: ${view.gradients ? "moves" : "most attended by"} ` +
      `${view.gradients ? "most " : ""}${trg[best]} (${shown(best, i)})`, () => highlightSource(i)));
  });
  trg.forEach((text, j) => {
    const best = argmax(matrix[j]);
    const y = top + CELL * j + CELL / 2 + 4;
    const el = label({class: "label trg-label", "data-trg-index": j, x: left - 6, y, "text-anchor": "end"}, text,
      `${text}, translation ${unit} ${j + 1} of ${trg.length}: ` +
        `${view.gradients ? "moved most by" : "attends most to"} ${src[best]} (${shown(j, best)})`, () => highlightTarget(j));
    if (view.scores) el.append(svgElement("title", {}, `log-probability ${view.scores[j].toFixed(3)}`));
    svg.append(el);
  });
  const cells = svgElement("g", {"aria-hidden": "true"});
  matrix.forEach((row, j) => row.forEach((weight, i) => {
    const cell = svgElement("rect", {class: "cell", "data-trg-index": j, "data-src-index": i,
      "data-weight": weight, x: left + CELL * i, y: top + CELL * j, width: CELL - 1, height: CELL - 1,
      fill: color(weight)});
    cell.append(svgElement("title", {}, `${trg[j]} → ${src[i]}: ${view.raw ? shown(j, i) : weight.toFixed(3)}`));
    cell.addEventListener("mouseenter", () => highlightTarget(j));
    cell.addEventListener("click", () => highlightTarget(j));
    cells.append(cell);
  }));
  svg.append(cells);
  svg.addEventListener("mouseleave", clearHighlight);  // no focus listener here: it would make the svg a tab stop
  container.replaceChildren(svg);
  page.view = view;
  drawTable(view);
}

// The heatmap as a table: source units as column headers, target units as row headers, the weights in the cells.
function drawTable({matrix, raw, src, trg, unit, gradients}) {
  const cell = (tag, text, attributes = {}) => {
    const el = document.createElement(tag);
    el.textContent = text;
    for (const [k, v] of Object.entries(attributes)) el.setAttribute(k, v);
    return el;
  };
  const table = cell("table", "", {id: "attention-table"});
  table.append(cell("caption", `${gradients ? "Gradient norms" : "Attention weights"}: a row per translation ` +
    `${unit}, a column per source ${unit}`));
  const head = document.createElement("thead");
  const header = document.createElement("tr");
  header.append(cell("td", ""), ...src.map((text) => cell("th", text, {scope: "col"})));
  head.append(header);
  const body = document.createElement("tbody");
  body.append(...matrix.map((row, j) => {
    const tr = document.createElement("tr");
    tr.append(cell("th", trg[j], {scope: "row"}), ...row.map((weight, i) => {
      const td = cell("td", raw ? raw[j][i].toExponential(2) : weight.toFixed(2));
      td.style.background = color(weight);
      td.classList.toggle("dark", weight > 0.5);
      return td;
    }));
    return tr;
  }));
  table.append(head, body);
  $("attention-table-box").replaceChildren(table);
}

function showTable() {
  $("attention-table-box").classList.toggle("visually-hidden", !$("show-table").checked);
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
  $("source").addEventListener("input", () => updateCounter());
  for (const id of ["source", "beam", "nbest-size"]) {
    $(id).addEventListener("input", () => $(id).removeAttribute("aria-invalid"));
  }
  $("model").addEventListener("change", modelChanged);
  $("copy").addEventListener("click", copyTranslation);
  $("show-table").addEventListener("change", showTable);
  for (const id of ["units", "layer", "head"]) $(id).addEventListener("change", drawHeatmap);
  $("matrix").addEventListener("change", () => {
    setUpViewControls(page.result.translations[page.selected]);
    drawHeatmap();
  });
  loadModels();
});
