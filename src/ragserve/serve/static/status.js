// The status page: GET /api/status rendered as cards (index, last ingest, LLM, service).

import {
  api,
  el,
  errorMessage,
  formatNumber,
  formatWhen,
  setUpKeyButton,
  setUpThemeToggle,
} from "./common.js";

const $ = (id) => document.getElementById(id);

function card(title, rows, extra) {
  const list = el("dl", { class: "facts" });
  for (const [name, value] of rows) {
    if (value === null || value === undefined || value === "") continue;
    list.append(el("dt", { text: name }), el("dd", {}, value));
  }
  return el("section", { class: "status-card", "aria-label": title }, el("h2", { text: title }), list, extra || null);
}

function state(ok, yes, no) {
  return el("span", { class: "state " + (ok ? "ok" : "bad") }, el("span", { class: "dot", "aria-hidden": "true" }), ok ? yes : no);
}

function indexCard(index) {
  const schema = index.schema || {};
  const last = index.last_ingest || {};
  return card("Index", [
    ["Collection", index.collection],
    ["Backend", index.backend === "edge" ? "Qdrant Edge (embedded)" : "Qdrant server"],
    ["State", state(index.exists && !index.error, "built", index.error || "missing — run ragserve ingest")],
    ["Chunks", formatNumber(index.points)],
    ["Pages", last.pages !== undefined ? formatNumber(last.pages) : null],
    ["Embedder", schema.embed_model ? `${schema.embed_model} (${schema.dimension}-d)` : null],
    [
      "Chunking",
      schema.chunk_size
        ? `${schema.section_aware ? "by section, " : ""}${schema.chunk_size}/${schema.chunk_overlap}`
        : null,
    ],
    ["Version", index.index_version],
    ...evalRows(index.last_eval),
  ]);
}

function evalRows(evaluation) {
  if (!evaluation) return [["Last eval", "none recorded (ragserve ingest --eval FILE records one)"]];
  const score = typeof evaluation.retrieval_score === "number" ? evaluation.retrieval_score.toFixed(3) : "–";
  return [
    ["Last eval", state(evaluation.passed !== false, `retrieval score ${score}`, `retrieval score ${score} (gate failed)`)],
    ["Evaluated", formatWhen(evaluation.evaluated_at)],
    ["Report", evaluation.report ? el("code", { text: String(evaluation.report) }) : null],
  ];
}

function ingestCard(last) {
  if (!last) return card("Last ingest", [["Recorded", "no ingest summary stored"]]);
  const pages = [
    `${formatNumber(last.pages_written)} written`,
    `${formatNumber(last.pages_skipped)} unchanged`,
    `${formatNumber(last.pages_failed)} failed`,
    `${formatNumber(last.pages_deleted)} deleted`,
  ].join(" · ");
  return card("Last ingest", [
    ["Source", el("code", { text: String(last.source || "–") })],
    ["Finished", formatWhen(last.finished_at)],
    ["Pages", `${formatNumber(last.pages)} (${pages})`],
    ["Chunks", formatNumber(last.chunks)],
    ["Points", `${formatNumber(last.points_written)} written, ${formatNumber(last.points_deleted)} deleted`],
    ["Took", typeof last.seconds === "number" ? `${last.seconds.toFixed(1)} s` : null],
  ]);
}

function llmCard(llm) {
  const extractive = llm.provider === "extractive";
  return card("Answers", [
    ["Provider", extractive ? "extractive (no language model)" : llm.provider],
    ["Model", extractive ? null : llm.model || "the provider's default"],
    ["Reachable", state(llm.reachable, "yes", llm.problem || "no")],
  ]);
}

function serviceCard(status) {
  const problems = status.problems.length
    ? el("ul", { class: "problems" }, ...status.problems.map((problem) => el("li", { text: problem })))
    : null;
  return card(
    "Service",
    [
      ["ragserve", status.version],
      ["Ready", state(status.ready, "yes", "no")],
      ["API key", status.auth_required ? "required" : "not required (loopback)"],
      ["Rate limit", status.rate_limit_per_minute ? `${status.rate_limit_per_minute} / minute` : "off"],
      ["Retrieval", `${status.retrieve.mode}, ${status.retrieve.k} sources by default`],
    ],
    problems,
  );
}

async function load() {
  const main = $("main");
  const overall = $("overall");
  main.setAttribute("aria-busy", "true");
  let response;
  try {
    response = await api("/api/status");
  } catch (error) {
    overall.textContent = `The service could not be reached (${error.message}).`;
    return;
  }
  if (!response.ok) {
    overall.textContent = `Status unavailable: ${await errorMessage(response)}`;
    main.setAttribute("aria-busy", "false");
    return;
  }
  const status = await response.json();
  overall.replaceChildren(
    state(status.ready, "Ready to answer", "Not ready"),
    el("span", { class: "muted small", text: ` · checked ${new Date().toLocaleTimeString()}` }),
  );
  $("cards").replaceChildren(
    indexCard(status.index),
    llmCard(status.llm),
    ingestCard(status.index.last_ingest),
    serviceCard(status),
  );
  main.setAttribute("aria-busy", "false");
}

setUpThemeToggle($("theme-toggle"));
setUpKeyButton($("key-button"), load);
$("refresh").addEventListener("click", load);
load();
