/* toolreg console: what every page shares.
 *
 * Registry values only ever reach the page as text (textContent, attribute
 * values through setAttribute on non-URL attributes): never as markup, never as
 * a link target. Links the console makes point at its own pages, with the
 * value URL-encoded in the query string.
 */
"use strict";

(function () {
  const body = document.body;
  const root = body.dataset.root || "";
  const readsRequireToken = body.dataset.readsRequireToken === "true";
  const TOKEN_KEY = "toolreg.token";

  // -- the token: this tab's sessionStorage only -----------------------------------------
  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }
  function setToken(value) { sessionStorage.setItem(TOKEN_KEY, value); }
  function forgetToken() { sessionStorage.removeItem(TOKEN_KEY); }
  function authHeaders(extra) {
    const headers = Object.assign({}, extra || {});
    const t = token();
    if (t) headers["Authorization"] = "Bearer " + t;
    return headers;
  }

  // -- the API -----------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || ("HTTP " + status));
      this.status = status;
      this.problem = problem || {};
    }
  }

  async function api(method, path, payload) {
    const init = { method: method, headers: authHeaders({ Accept: "application/json" }), cache: "no-store" };
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = typeof payload === "string" ? payload : JSON.stringify(payload);
    }
    let response;
    try {
      response = await fetch(root + path, init);
    } catch (e) {
      throw new ApiError(0, { title: "Registry unreachable", detail: "the registry did not answer (" + e.message + ")" });
    }
    const type = response.headers.get("content-type") || "";
    const data = type.includes("json") ? await response.json().catch(() => null) : null;
    if (!response.ok) {
      if (response.status === 401 && readsRequireToken && !token()) showGate();
      throw new ApiError(response.status, data);
    }
    return data;
  }

  // -- DOM helpers: text only ----------------------------------------------------------------
  // Control and format characters but tab and newline shown as \u202e-style escapes, as the
  // CLI shows them: a registration's right-to-left override must not reorder what the page
  // shows (a JSON line, an operation's name) to read as something it is not.
  const UNPRINTABLE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;
  function visible(text) {
    return String(text).replace(UNPRINTABLE, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  }
  function el(tag, props, children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === undefined || value === null || value === false) continue;
        if (key === "text") node.textContent = visible(value);
        else if (key === "className") node.className = value;
        else if (key === "dataset") Object.assign(node.dataset, value);
        else node.setAttribute(key, String(value));
      }
    }
    for (const child of [].concat(children || [])) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(visible(child)));
    }
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function $(id) { return document.getElementById(id); }

  function pageUrl(page, params) {
    const query = new URLSearchParams(params || {}).toString();
    return root + "/ui/" + page + (query ? "?" + query : "");
  }
  function toolLink(toolId) {
    return el("a", { href: pageUrl("tool", { id: toolId }), text: toolId });
  }

  // -- times ---------------------------------------------------------------------------------
  function exact(iso) {
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString(undefined, { hour12: false }) + " (" + d.toISOString() + ")";
  }
  function clock(iso) {
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString(undefined, { hour12: false, month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  function relative(iso) {
    const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    const future = seconds < 0;
    const s = Math.abs(seconds);
    let text;
    if (s < 60) text = s + " s";
    else if (s < 3600) text = Math.floor(s / 60) + " min";
    else if (s < 86400) text = Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    else text = Math.floor(s / 86400) + " d";
    return future ? "in " + text : text + " ago";
  }
  function timeEl(iso, mode) {
    if (!iso) return el("span", { className: "muted", text: "never" });
    const node = el("time", { datetime: iso, title: exact(iso), dataset: { mode: mode || "relative" } });
    node.textContent = mode === "clock" ? clock(iso) : relative(iso);
    return node;
  }
  setInterval(() => {
    for (const node of document.querySelectorAll('time[data-mode="relative"]')) {
      node.textContent = relative(node.getAttribute("datetime"));
    }
  }, 1000);

  // -- problems --------------------------------------------------------------------------------
  function showProblem(container, error) {
    clear(container);
    const problem = (error && error.problem) || {};
    const title = problem.title || "Error";
    container.append(el("strong", { text: title + (error.status ? " (" + error.status + ")" : "") }));
    if (problem.errors && problem.errors.length) {
      container.append(el("ul", null, problem.errors.map((e) => el("li", { text: e.field + ": " + e.message }))));
    } else if (problem.detail || error.message) {
      container.append(el("p", { text: problem.detail || error.message }));
    }
    container.hidden = false;
  }
  function hideProblem(container) { clear(container); container.hidden = true; }

  // -- live indicator ----------------------------------------------------------------------------
  const LIVE_TEXT = { "live-on": "live", reconnecting: "reconnecting…", connecting: "connecting…", "needs-token": "needs a token", offline: "offline" };
  function setLive(state) {
    const node = $("live");
    if (!node) return;
    node.className = "live " + state;
    node.textContent = LIVE_TEXT[state] || state;
    node.dataset.state = state;
  }

  /* Follow the change feed (SSE over fetch, so that the token goes in a header).
   * Resumes with Last-Event-ID after any drop; onEvent gets each event once, in order;
   * onResync is called when the position is lost (410) and the page must re-read. */
  function follow(options) {
    let last = options.since || null;
    let stopped = false;
    let delay = 250;
    const IDLE_MS = 40000; // the server sends a keepalive every 15 s

    let current = null;
    // A page left (or kept in the back/forward cache) must not hold its stream: browsers
    // allow 6 connections per host over HTTP/1.1, and a 7th page would wait for a slot.
    window.addEventListener("pagehide", () => { stopped = true; if (current) current.abort(); });
    window.addEventListener("pageshow", (event) => {
      if (event.persisted && stopped) { stopped = false; loop(); }
    });

    async function once() {
      const controller = new AbortController();
      current = controller;
      let idle = setTimeout(() => controller.abort(), IDLE_MS);
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (last) headers["Last-Event-ID"] = last;
      const response = await fetch(root + "/v1/changes", { headers: headers, cache: "no-store", signal: controller.signal });
      if (response.status === 401 || response.status === 403) {
        clearTimeout(idle);
        setLive("needs-token");
        if (readsRequireToken && !token()) showGate();
        return "auth";
      }
      if (response.status === 410) {
        clearTimeout(idle);
        last = null;
        if (options.onResync) options.onResync();
        return "resync";
      }
      if (!response.ok || !response.body) { clearTimeout(idle); throw new Error("HTTP " + response.status); }
      setLive("live-on");
      delay = 250;
      if (options.onOpen) options.onOpen();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      try {
        for (;;) {
          const chunk = await reader.read();
          if (chunk.done) break;
          clearTimeout(idle);
          idle = setTimeout(() => controller.abort(), IDLE_MS);
          buffer += chunk.value.replace(/\r\n/g, "\n");
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const frame = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            handle(frame);
          }
        }
      } finally {
        clearTimeout(idle);
      }
      return "ended";
    }

    function handle(frame) {
      let id = null, kind = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") id = value;
        else if (field === "event") kind = value;
        else if (field === "data") data.push(value);
      }
      if (kind === "error" || !data.length) return;
      let event;
      try { event = JSON.parse(data.join("\n")); } catch (e) { return; }
      if (id) last = id;
      options.onEvent(event);
    }

    async function loop() {
      setLive("connecting");
      while (!stopped) {
        let outcome;
        try { outcome = await once(); } catch (e) { outcome = "error"; }
        if (stopped) break;
        if (outcome === "auth") { await sleep(5000); continue; }
        setLive("reconnecting");
        await sleep(delay);
        delay = Math.min(delay * 2, 2000);
      }
    }
    loop();
    return { stop() { stopped = true; }, position() { return last; } };
  }

  function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

  /* Run fn at most once per interval, the last call winning (a burst of events: one re-read). */
  function debounce(fn, wait, maxWait) {
    let timer = null, first = 0;
    return function () {
      const now = Date.now();
      if (!timer) first = now;
      clearTimeout(timer);
      const delay = Math.max(0, Math.min(wait, first + maxWait - now));
      timer = setTimeout(() => { timer = null; fn(); }, delay);
    };
  }

  // -- the token gate and the header --------------------------------------------------------------
  let whoami = null;
  async function loadWho() {
    const who = $("who");
    if (!token()) { who.hidden = true; whoami = null; return null; }
    try {
      whoami = await api("GET", "/v1/tokens/me");
      $("who-name").textContent = "token " + whoami.name + " (" + whoami.scope + ")";
      who.hidden = false;
    } catch (e) {
      whoami = null;
      if (e.status === 401) {
        forgetToken();
        who.hidden = true;
        if (readsRequireToken) showGate("That token is not valid (any more): enter another.");
      }
    }
    return whoami;
  }

  function showGate(message) {
    const gate = $("token-gate");
    gate.hidden = false;
    $("main").hidden = true;
    const error = $("gate-error");
    if (message) { error.textContent = message; error.hidden = false; }
    setLive("needs-token");
    $("gate-token").focus();
  }

  async function useToken(value) {
    setToken(value.trim());
    try {
      const who = await api("GET", "/v1/tokens/me");
      return who;
    } catch (e) {
      forgetToken();
      throw e;
    }
  }

  function start(init) {
    $("forget-token").addEventListener("click", () => { forgetToken(); location.reload(); });
    $("gate-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await useToken($("gate-token").value);
        location.reload();
      } catch (e) {
        const error = $("gate-error");
        error.textContent = e.status === 401 ? "That token is not valid." : e.message;
        error.hidden = false;
      }
    });
    if (readsRequireToken && !token()) { showGate(); return; }
    loadWho().then(() => {
      if (readsRequireToken && !token()) return;
      init();
    });
  }

  window.Console = {
    root, readsRequireToken, token, setToken, forgetToken, useToken, api, ApiError,
    el, visible, clear, $, pageUrl, toolLink, exact, clock, relative, timeEl,
    showProblem, hideProblem, setLive, follow, debounce, sleep, start,
    who() { return whoami; },
    reloadWho: loadWho,
  };
})();
