// What both pages share: building DOM safely, the API key, API calls, the theme.
//
// Untrusted text (answers, snippets, titles, error messages) only ever reaches the
// page through textContent: `el` has no way to set HTML, and links go through
// `safeHref`, which lets only http(s) URLs become an href.

const KEY_STORAGE = "ragserve-api-key";
const THEME_STORAGE = "ragserve-theme";

/** An element with attributes and children; strings become text nodes, never HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on") || name === "style") throw new Error(`el: ${name} not allowed`);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
const ICONS = {
  // Outline icons after Lucide (ISC licence), as path data only.
  "thumbs-up": [
    "M7 10v12",
    "M15 5.88 14 10h5.83a2 2 0 0 1 1.92 2.56l-2.33 8A2 2 0 0 1 17.5 22H4a2 2 0 0 1-2-2v-8a2 2 0 0 1 2-2h2.76a2 2 0 0 0 1.79-1.11L12 2a3.13 3.13 0 0 1 3 3.88Z",
  ],
  "thumbs-down": [
    "M17 14V2",
    "M9 18.12 10 14H4.17a2 2 0 0 1-1.92-2.56l2.33-8A2 2 0 0 1 6.5 2H20a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2h-2.76a2 2 0 0 0-1.79 1.11L12 22a3.13 3.13 0 0 1-3-3.88Z",
  ],
  copy: [
    "M10 8h10a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H10a2 2 0 0 1-2-2V10a2 2 0 0 1 2-2Z",
    "M4 16c-1.1 0-2-.9-2-2V4c0-1.1.9-2 2-2h10c1.1 0 2 .9 2 2",
  ],
};

/** A small inline SVG icon (built with DOM calls: nothing is parsed as markup). */
export function icon(name) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  for (const d of ICONS[name]) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

/** The URL when it is http(s), else null: a crawled page must not plant `javascript:`. */
export function safeHref(url) {
  try {
    const parsed = new URL(url, window.location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

// -- the API key: kept in this tab's sessionStorage only -------------------------

export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

function storeKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled: the key lives until the page closes */
  }
}

let keyDialog = null;

function buildKeyDialog() {
  const input = el("input", {
    id: "api-key-input",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "api-key-help",
  });
  const reason = el("p", { id: "api-key-reason", class: "dialog-reason", role: "alert" });
  const form = el(
    "form",
    { class: "dialog-form" },
    el("h2", { id: "api-key-title", text: "API key required" }),
    reason,
    el("label", { for: "api-key-input", text: "API key" }),
    input,
    el("p", {
      id: "api-key-help",
      class: "muted small",
      text: "Kept in this browser tab only (sessionStorage) and sent as a Bearer token.",
    }),
    el(
      "div",
      { class: "dialog-actions" },
      el("button", { type: "button", class: "button ghost", value: "cancel", text: "Cancel" }),
      el("button", { type: "submit", class: "button primary", text: "Use this key" }),
    ),
  );
  const dialog = el("dialog", { id: "api-key-dialog", "aria-labelledby": "api-key-title" }, form);
  document.body.append(dialog);
  return { dialog, form, input, reason };
}

/** Ask for a key; resolves true when the reader gave one, false when they cancelled. */
export function askForKey(message) {
  keyDialog = keyDialog || buildKeyDialog();
  const { dialog, form, input, reason } = keyDialog;
  reason.textContent = message || "This service needs an API key to answer.";
  input.value = "";
  return new Promise((resolve) => {
    const finish = (given) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      resolve(given);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      storeKey(key);
      finish(true);
    };
    const onCancel = (event) => {
      event.preventDefault();
      finish(false);
    };
    const cancel = form.querySelector('button[value="cancel"]');
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    input.focus();
  });
}

export function forgetKey() {
  storeKey("");
}

// -- API calls ---------------------------------------------------------------------

/** The error message of an API error body, or a fallback naming the status. */
export async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return String(body.error.message);
  } catch {
    /* not JSON */
  }
  return `the server answered ${response.status} ${response.statusText}`.trim();
}

/**
 * fetch() against the API with the key attached. On 401/403 it asks for a key and
 * retries once per key given; returns the final Response (the caller checks .ok).
 */
export async function api(path, options = {}) {
  for (;;) {
    const headers = new Headers(options.headers || {});
    const key = apiKey();
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401 && response.status !== 403) return response;
    // A missing and a wrong key are both 401 (403 from older servers): a key sent and
    // answered 401 or 403 was refused.
    const refused = response.status === 403 || Boolean(key);
    const message = refused
      ? "That API key was refused. Check it with the operator and try again."
      : "This service needs an API key to answer.";
    if (refused) forgetKey();
    if (!(await askForKey(message))) return response;
  }
}

export function formatNumber(value) {
  return typeof value === "number" ? value.toLocaleString("en-US") : "–";
}

export function formatWhen(epochSeconds) {
  if (typeof epochSeconds !== "number") return "–";
  const date = new Date(epochSeconds * 1000);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// -- theme: the OS preference unless the reader picked one ------------------------

function currentTheme() {
  const chosen = document.documentElement.dataset.theme;
  if (chosen === "light" || chosen === "dark") return chosen;
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function labelThemeButton(button) {
  const next = currentTheme() === "dark" ? "light" : "dark";
  button.setAttribute("aria-label", `Switch to the ${next} theme`);
  button.title = `Switch to the ${next} theme`;
  button.querySelector(".theme-label").textContent = next === "dark" ? "Dark" : "Light";
}

export function setUpThemeToggle(button) {
  labelThemeButton(button);
  button.addEventListener("click", () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    try {
      localStorage.setItem(THEME_STORAGE, next);
    } catch {
      /* not remembered */
    }
    labelThemeButton(button);
  });
  window
    .matchMedia("(prefers-color-scheme: dark)")
    .addEventListener("change", () => labelThemeButton(button));
}

export function setUpKeyButton(button, onChange) {
  button.addEventListener("click", async () => {
    if (await askForKey("Enter the API key to use in this tab.")) onChange();
  });
}
