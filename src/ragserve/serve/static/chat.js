// The chat page: ask → streamed answer (SSE from POST /query) → cited sources → feedback.
//
// Everything shown comes from the API's fields (answer, sources, llm, degraded,
// grounded, warnings), so the page works the same with an LLM or extractive answers.
// Text from the server is rendered with textContent only (see common.js).

import {
  api,
  el,
  errorMessage,
  formatNumber,
  icon,
  safeHref,
  setUpKeyButton,
  setUpThemeToggle,
} from "./common.js";

const MAX_TURNS = 20;
const CITATION = /(`[^`\n]+`)|\[(\d{1,3})\]/g;

const $ = (id) => document.getElementById(id);
const form = $("ask-form");
const questionInput = $("question");
const askButton = $("ask-button");
const stopButton = $("stop-button");
const kInput = $("k");
const prefixInput = $("url-prefix");
const conversation = $("conversation");
const welcome = $("welcome");
const announcer = $("announcer");

const state = { status: null, running: null, turns: 0, kTouched: false };

function announce(text) {
  announcer.textContent = "";
  window.setTimeout(() => {
    announcer.textContent = text;
  }, 30);
}

// -- status: the header badge, defaults for k ------------------------------------

function llmLabel(llm) {
  if (!llm) return "";
  if (llm.provider === "extractive") return "extractive answers (no language model)";
  const name = llm.model || llm.provider;
  return llm.reachable ? `answers by ${name}` : `${name} unreachable`;
}

async function loadStatus() {
  const badge = $("index-badge");
  const summary = $("index-summary");
  let response;
  try {
    response = await api("/api/status");
  } catch {
    badge.textContent = "service unreachable";
    return;
  }
  if (!response.ok) {
    badge.textContent =
      response.status === 401 || response.status === 403 ? "API key needed" : "status unavailable";
    return;
  }
  const status = await response.json();
  state.status = status;
  const index = status.index;
  const parts = [index.collection];
  if (index.exists) parts.push(`${formatNumber(index.points)} chunks`);
  else parts.push("no index yet");
  badge.replaceChildren(
    el("span", { class: "dot " + (status.ready ? "ok" : "bad"), "aria-hidden": "true" }),
    el("span", { text: parts.join(" · ") }),
    el("span", { class: "badge-llm", text: llmLabel(status.llm) }),
  );
  badge.title = status.ready ? "ready" : status.problems.join("; ");
  const pages = index.last_ingest && index.last_ingest.pages;
  summary.textContent = index.exists
    ? `Searching ${formatNumber(index.points)} passages` +
      (pages ? ` from ${formatNumber(pages)} pages` : "") +
      ` in “${index.collection}”; ${llmLabel(status.llm)}.`
    : "The index is empty: run `ragserve ingest <url-or-folder>` on the server first.";
  if (!state.kTouched && status.retrieve && status.retrieve.k) {
    kInput.value = String(status.retrieve.k);
  }
}

// -- a turn: question, answer, sources, feedback ---------------------------------

function createTurn(question) {
  state.turns += 1;
  const id = `turn-${state.turns}`;
  const turn = {
    id,
    question,
    text: "",
    sources: [],
    final: null,
    requestId: null,
    rating: null,
    feedbackId: null,
    marked: null,
  };
  turn.answerText = el("div", { class: "answer-text streaming", id: `${id}-text` });
  turn.labels = el("div", { class: "labels" });
  turn.warnings = el("div", { class: "warnings", hidden: true });
  turn.actions = el("div", { class: "actions", hidden: true });
  turn.feedbackPanel = el("div", { class: "feedback-panel", hidden: true });
  turn.sourcesList = el("ol", { class: "sources", "aria-label": "Sources" });
  turn.sourcesBlock = el(
    "section",
    { class: "sources-block", hidden: true, "aria-labelledby": `${id}-sources-title` },
    el("h3", { id: `${id}-sources-title`, class: "sources-title", text: "Sources" }),
    turn.sourcesList,
  );
  turn.answer = el(
    "article",
    { class: "answer", "aria-busy": "true", "aria-labelledby": `${id}-q` },
    turn.labels,
    turn.answerText,
    turn.warnings,
    turn.actions,
    turn.feedbackPanel,
    turn.sourcesBlock,
  );
  turn.node = el(
    "li",
    { class: "turn", id },
    el("div", { class: "question" }, el("p", { id: `${id}-q`, text: question })),
    turn.answer,
  );
  turn.answerText.append(el("span", { class: "thinking", text: "Searching the docs…" }));
  conversation.append(turn.node);
  while (conversation.children.length > MAX_TURNS) conversation.firstElementChild.remove();
  welcome.hidden = true;
  turn.node.scrollIntoView({ block: "start", behavior: "smooth" });
  return turn;
}

/** Paragraphs, fenced code and inline code, with [n] linked to source n. */
function renderRich(container, text, sources) {
  const byNumber = new Map(sources.map((source) => [source.n, source]));
  const nodes = [];
  text.split("```").forEach((part, index) => {
    if (index % 2 === 1) {
      const code = part.includes("\n") ? part.replace(/^[^\n]*\n/, "") : part;
      nodes.push(el("pre", {}, el("code", { text: code.replace(/\n$/, "") })));
      return;
    }
    for (const paragraph of part.split(/\n{2,}/)) {
      if (paragraph.trim()) nodes.push(el("p", {}, ...inline(paragraph.trim(), byNumber)));
    }
  });
  container.replaceChildren(...nodes);
}

function inline(text, byNumber) {
  const out = [];
  let last = 0;
  for (const match of text.matchAll(CITATION)) {
    if (match.index > last) out.push(text.slice(last, match.index));
    if (match[1]) out.push(el("code", { text: match[1].slice(1, -1) }));
    else out.push(citation(Number(match[2]), byNumber.get(Number(match[2]))));
    last = match.index + match[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

function citation(number, source) {
  const href = source && safeHref(source.url);
  if (!href) return el("span", { class: "cite missing", title: "no such source", text: `[${number}]` });
  return el("a", {
    class: "cite",
    href,
    target: "_blank",
    rel: "noopener noreferrer",
    "data-n": number,
    title: source.title,
    "aria-label": `Source ${number}: ${source.title}`,
    text: `[${number}]`,
  });
}

function sourceCard(turn, source) {
  const href = safeHref(source.url);
  const path = source.heading_path && source.heading_path.length ? source.heading_path : [];
  const heading = path.length ? path[path.length - 1] : source.title;
  const trail = path.length > 1 ? path.slice(0, -1).join(" › ") : "";
  const titleChildren = [el("span", { class: "source-n", text: String(source.n) }), heading];
  const title = href
    ? el("a", { class: "source-title", href, target: "_blank", rel: "noopener noreferrer" }, ...titleChildren)
    : el("span", { class: "source-title" }, ...titleChildren);
  const mark = el("button", {
    type: "button",
    class: "mark-source",
    "aria-pressed": "false",
    "aria-label": `Source ${source.n} answers the question`,
    text: "Right source",
  });
  mark.addEventListener("click", () => toggleMarked(turn, source.url));
  let where = source.url;
  try {
    const url = new URL(source.url);
    where = url.host + url.pathname + url.hash;
  } catch {
    /* shown as is */
  }
  const marked = turn.marked === source.url;
  mark.setAttribute("aria-pressed", String(marked));
  return el(
    "li",
    {
      class: "source-card" + (marked ? " marked" : ""),
      id: `${turn.id}-source-${source.n}`,
      "data-url": source.url,
    },
    el("h4", { class: "source-heading" }, title),
    trail ? el("p", { class: "source-trail", text: trail }) : null,
    el("p", { class: "snippet", text: withoutHeadings(source.snippet, path) }),
    el("p", { class: "source-url", title: source.url, text: where }),
    el(
      "div",
      { class: "source-foot" },
      el("span", { class: "score", title: "retrieval score", text: `score ${source.score.toFixed(3)}` }),
      turn.final ? mark : null,
    ),
  );
}

/** Chunks start with their heading path ("Page > Section text…"); the card shows it already. */
function withoutHeadings(snippet, path) {
  const prefix = path.join(" > ");
  return prefix && snippet.startsWith(prefix + " ") ? snippet.slice(prefix.length + 1) : snippet;
}

function renderSources(turn) {
  turn.sourcesList.replaceChildren(...turn.sources.map((source) => sourceCard(turn, source)));
  turn.sourcesBlock.hidden = turn.sources.length === 0;
}

function renderLabels(turn) {
  const final = turn.final;
  const labels = [];
  if (final.degraded) {
    labels.push(el("span", { class: "label warn", text: "Language model failed · extracted passages" }));
  } else if (final.llm === "extractive") {
    labels.push(el("span", { class: "label info", text: "Extracted passages · no language model" }));
  } else {
    labels.push(el("span", { class: "label subtle", text: `Written by ${final.llm}` }));
  }
  if (!final.grounded) labels.push(el("span", { class: "label warn", text: "Unverified" }));
  turn.labels.replaceChildren(...labels);
  const warnings = final.warnings || [];
  turn.warnings.replaceChildren(
    ...warnings.map((warning) => el("p", { class: "warning", role: "note", text: warning })),
  );
  turn.warnings.hidden = warnings.length === 0;
}

function renderActions(turn) {
  const final = turn.final;
  const copy = el(
    "button",
    { type: "button", class: "button small copy" },
    icon("copy"),
    el("span", { class: "copy-text", text: "Copy answer" }),
  );
  copy.addEventListener("click", () => copyAnswer(turn, copy));
  const up = el(
    "button",
    { type: "button", class: "button small rate up", "aria-pressed": "false", title: "Helpful" },
    icon("thumbs-up"),
    el("span", { class: "rate-text", text: "Helpful" }),
  );
  const down = el(
    "button",
    { type: "button", class: "button small rate down", "aria-pressed": "false", title: "Not helpful" },
    icon("thumbs-down"),
    el("span", { class: "rate-text", text: "Not helpful" }),
  );
  up.addEventListener("click", () => rate(turn, "up"));
  down.addEventListener("click", () => rate(turn, "down"));
  turn.rateButtons = { up, down };
  const seconds = final.timings && final.timings.total;
  const meta = el("span", {
    class: "meta muted small",
    text: [
      `${final.sources.length} sources`,
      typeof seconds === "number" ? `${seconds.toFixed(2)} s` : null,
    ].filter(Boolean).join(" · "),
  });
  turn.actions.replaceChildren(copy, up, down, meta);
  turn.actions.hidden = false;
}

function finishTurn(turn) {
  turn.answer.setAttribute("aria-busy", "false");
  turn.answerText.classList.remove("streaming");
}

function showError(turn, message) {
  turn.error = message;
  if (!turn.text) turn.answerText.replaceChildren();
  turn.answerText.append(el("p", { class: "error", role: "alert", text: message }));
  announce("The question failed: " + message);
}

// -- feedback ----------------------------------------------------------------------

function toggleMarked(turn, url) {
  turn.marked = turn.marked === url ? null : url;
  for (const card of turn.sourcesList.children) {
    const pressed = card.dataset.url === turn.marked;
    card.classList.toggle("marked", pressed);
    card.querySelector(".mark-source").setAttribute("aria-pressed", String(pressed));
  }
  if (turn.rating) sendFeedback(turn);
}

function rate(turn, rating) {
  turn.rating = rating;
  turn.rateButtons.up.setAttribute("aria-pressed", String(rating === "up"));
  turn.rateButtons.down.setAttribute("aria-pressed", String(rating === "down"));
  showFeedbackPanel(turn);
  sendFeedback(turn);
}

function showFeedbackPanel(turn) {
  if (!turn.feedbackPanel.hidden) return;
  const id = `${turn.id}-comment`;
  const comment = el("textarea", { id, rows: "2", maxlength: "2000", placeholder: "What was right or wrong? (optional)" });
  const send = el("button", { type: "button", class: "button small primary", text: "Send comment" });
  turn.feedbackStatus = el("span", { class: "feedback-status muted small", role: "status" });
  send.addEventListener("click", () => {
    turn.comment = comment.value.trim();
    sendFeedback(turn);
  });
  turn.feedbackPanel.replaceChildren(
    el("label", { for: id, text: "Add a comment" }),
    comment,
    el("p", { class: "muted small", text: "You can also mark the source that answers the question with “Right source”." }),
    el("div", { class: "feedback-row" }, send, turn.feedbackStatus),
  );
  turn.feedbackPanel.hidden = false;
}

async function sendFeedback(turn) {
  const final = turn.final;
  const payload = {
    id: turn.feedbackId || undefined,
    rating: turn.rating,
    question: turn.question,
    answer: final.answer,
    sources: final.sources.map(({ n, url, title, score }) => ({ n, url, title, score })),
    source: turn.marked,
    comment: turn.comment || null,
    index_version: (state.status && state.status.index.index_version) || null,
    request_id: turn.requestId,
    llm: final.llm,
  };
  turn.feedbackStatus.textContent = "Saving…";
  try {
    const response = await api("/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload),
    });
    if (!response.ok) {
      turn.feedbackStatus.textContent = "Not saved: " + (await errorMessage(response));
      return;
    }
    const saved = await response.json();
    turn.feedbackId = saved.id;
    turn.feedbackStatus.textContent = "Thanks, feedback saved.";
  } catch (error) {
    turn.feedbackStatus.textContent = `Not saved: ${error.message}`;
  }
}

async function copyAnswer(turn, button) {
  const final = turn.final;
  const text =
    final.answer +
    "\n\nSources:\n" +
    final.sources.map((source) => `[${source.n}] ${source.title} — ${source.url}`).join("\n");
  let copied = false;
  try {
    await navigator.clipboard.writeText(text);
    copied = true;
  } catch {
    const scratch = el("textarea", { class: "visually-hidden", readonly: true });
    scratch.value = text;
    document.body.append(scratch);
    scratch.select();
    copied = document.execCommand("copy");
    scratch.remove();
  }
  const label = button.querySelector(".copy-text");
  label.textContent = copied ? "Copied" : "Copy failed";
  announce(copied ? "Answer copied" : "Copy failed");
  window.setTimeout(() => {
    label.textContent = "Copy answer";
  }, 2000);
}

// -- asking --------------------------------------------------------------------------

async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

function onEvent(turn, name, data) {
  if (name === "token") {
    if (!turn.text) turn.answerText.replaceChildren();
    turn.text += data.text;
    turn.answerText.textContent = turn.text;
    keepScrolled();
  } else if (name === "sources") {
    turn.sources = data;
    renderRich(turn.answerText, turn.text, turn.sources);
    renderSources(turn);
  } else if (name === "done") {
    turn.final = data;
    turn.text = data.answer;
    turn.sources = data.sources;
    renderRich(turn.answerText, turn.text, turn.sources);
    renderSources(turn);
    renderLabels(turn);
    renderActions(turn);
    announce(`Answer ready, with ${data.sources.length} sources.`);
  } else if (name === "error") {
    showError(turn, data.message || "the answer failed");
  }
}

function keepScrolled() {
  const nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 160;
  if (nearBottom) window.scrollTo({ top: document.body.scrollHeight });
}

function requestBody(question) {
  const body = { query: question, stream: true };
  const k = Number.parseInt(kInput.value, 10);
  if (Number.isInteger(k) && k >= 1 && k <= 100) body.k = k;
  const prefix = prefixInput.value.trim();
  if (prefix) body.filters = { url_prefix: prefix };
  return body;
}

function setBusy(busy) {
  askButton.disabled = busy;
  stopButton.hidden = !busy;
  form.setAttribute("aria-busy", String(busy));
}

async function ask(question) {
  const turn = createTurn(question);
  const controller = new AbortController();
  state.running = controller;
  setBusy(true);
  try {
    const response = await api("/query", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(requestBody(question)),
      signal: controller.signal,
    });
    turn.requestId = response.headers.get("X-Request-ID");
    if (!response.ok) {
      let message = await errorMessage(response);
      const retry = response.headers.get("Retry-After");
      if (response.status === 429 && retry) message += ` (you can ask again in ${retry} s)`;
      showError(turn, message);
      return;
    }
    await readEvents(response, (name, data) => onEvent(turn, name, data));
    if (!turn.final && !turn.error) showError(turn, "The answer stopped early; please ask again.");
  } catch (error) {
    if (error.name === "AbortError") {
      turn.answerText.append(el("p", { class: "muted small", text: "Stopped." }));
    } else {
      showError(turn, `Could not reach the service (${error.message}).`);
    }
  } finally {
    state.running = null;
    setBusy(false);
    finishTurn(turn);
  }
}

function submit() {
  const question = questionInput.value.trim();
  if (!question || state.running) return;
  questionInput.value = "";
  fitQuestion();
  ask(question);
}

function fitQuestion() {
  questionInput.style.height = "auto";
  questionInput.style.height = `${Math.min(questionInput.scrollHeight, 200)}px`;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});
questionInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  }
});
questionInput.addEventListener("input", fitQuestion);
kInput.addEventListener("change", () => {
  state.kTouched = true;
});
stopButton.addEventListener("click", () => state.running && state.running.abort());
$("new-chat").addEventListener("click", () => {
  if (state.running) state.running.abort();
  conversation.replaceChildren();
  welcome.hidden = false;
  questionInput.focus();
});
setUpThemeToggle($("theme-toggle"));
setUpKeyButton($("key-button"), loadStatus);
loadStatus();
questionInput.focus();
