/* The tools page: the table (filters, keyset pages, counts) kept live from the change feed. */
"use strict";

(function () {
  const C = window.Console;
  const { $, el } = C;
  const FIELDS = ["tool_id_contains", "node_type", "operation", "health", "capabilities", "where"];
  const INPUTS = { tool_id_contains: "f-text", node_type: "f-node-type", operation: "f-operation", health: "f-health", capabilities: "f-capabilities", where: "f-where" };
  const REFRESH_MS = 15000;
  const ACTIVITY_KEPT = 100;

  const params = new URLSearchParams(location.search);
  const limit = Math.min(500, Math.max(1, parseInt(params.get("limit") || "50", 10) || 50));
  let cursors = [null]; // the cursor of each page up to the current one
  let seq = 0;
  let shownIds = new Set();
  let feed = null;

  function query() {
    const body = { limit: limit };
    for (const name of FIELDS) {
      const value = (params.get(name) || "").trim();
      if (!value) continue;
      if (name === "capabilities") {
        try {
          body.capabilities = JSON.parse(value);
        } catch (e) {
          throw new C.ApiError(0, { title: "Validation failed", errors: [{ field: "capabilities", message: "is not valid JSON: " + e.message }] });
        }
      } else {
        body[name] = value;
      }
    }
    const cursor = cursors[cursors.length - 1];
    if (cursor) body.cursor = cursor;
    return body;
  }

  function row(tool, fresh) {
    const tr = el("tr", { className: "row-" + tool.health + (fresh ? " flash" : ""), dataset: { toolId: tool.tool_id, health: tool.health } }, [
      el("th", { scope: "row" }, C.toolLink(tool.tool_id)),
      el("td", { text: tool.node_type }),
      el("td", null, el("span", { className: "ops" }, tool.operations.map((op) => el("span", { className: "op", text: op })))),
      el("td", null, el("span", { className: "badge " + tool.health, text: tool.health })),
      el("td", null, C.timeEl(tool.last_heartbeat)),
      el("td", { text: tool.owner || "—" }),
    ]);
    return tr;
  }

  function renderCounts(counts) {
    for (const key of ["total", "healthy", "stale", "critical"]) $("count-" + key).textContent = counts[key].toLocaleString();
  }

  function render(page) {
    const tbody = $("tools-body");
    const before = shownIds;
    const rows = page.items.map((tool) => row(tool, before.size > 0 && !before.has(tool.tool_id)));
    C.clear(tbody);
    tbody.append(...rows);
    shownIds = new Set(page.items.map((t) => t.tool_id));
    $("empty").hidden = page.items.length > 0;
    renderCounts(page.counts);
    const n = cursors.length;
    let info = "Page " + n + " · " + page.items.length + (page.items.length === 1 ? " tool" : " tools");
    if (page.partial) info += " · looked at the next 5,000 tools only: the next page goes on";
    $("page-info").textContent = info;
    $("page-next").disabled = !page.next_cursor;
    $("page-prev").disabled = n <= 1;
    $("page-first").disabled = n <= 1;
    $("page-next").dataset.cursor = page.next_cursor || "";
    $("tools").dataset.page = String(n);
    $("tools").dataset.loadedAt = String(Date.now());
  }

  async function load() {
    const mine = ++seq;
    let page;
    try {
      page = await C.api("POST", "/v1/console/tools", query());
    } catch (error) {
      if (mine === seq) C.showProblem($("errors"), error);
      return null;
    }
    if (mine !== seq) return null; // a newer read is under way
    C.hideProblem($("errors"));
    render(page);
    return page;
  }

  const refresh = C.debounce(load, 150, 1000);

  function logEvent(event) {
    const list = $("activity");
    const item = el("li", { dataset: { kind: event.kind, toolId: event.tool_id } }, [
      C.timeEl(event.occurred_at, "clock"),
      el("span", { className: "badge " + badgeOf(event.kind), text: event.kind }),
      el("span", { className: "what" }, C.toolLink(event.tool_id)),
      event.reason ? el("span", { className: "note", text: event.reason }) : null,
    ]);
    list.prepend(item);
    while (list.children.length > ACTIVITY_KEPT) list.removeChild(list.lastChild);
  }

  function badgeOf(kind) {
    return { created: "healthy", healthy: "healthy", passing: "passing", updated: "unknown", deleted: "absent", stale: "stale", critical: "critical" }[kind] || "unknown";
  }

  function fillForm() {
    for (const name of FIELDS) {
      const input = $(INPUTS[name]);
      const value = params.get(name);
      if (value !== null) input.value = value;
    }
  }

  function wire() {
    $("page-next").addEventListener("click", () => {
      const next = $("page-next").dataset.cursor;
      if (!next) return;
      cursors.push(next);
      load();
    });
    $("page-prev").addEventListener("click", () => {
      if (cursors.length > 1) cursors.pop();
      load();
    });
    $("page-first").addEventListener("click", () => {
      cursors = [null];
      load();
    });
    $("filters").addEventListener("submit", (event) => {
      // Empty fields stay out of the URL.
      event.preventDefault();
      const next = new URLSearchParams();
      for (const name of FIELDS) {
        const value = $(INPUTS[name]).value.trim();
        if (value) next.set(name, value);
      }
      if (params.get("limit")) next.set("limit", params.get("limit"));
      const query = next.toString();
      location.assign(C.root + "/ui/" + (query ? "?" + query : ""));
    });
  }

  C.start(async function () {
    fillForm();
    wire();
    const first = await load();
    let opened = 0;
    feed = C.follow({
      since: first ? first.position : null,
      onEvent(event) { logEvent(event); refresh(); },
      onResync() { load(); },
      // After a reconnect the replayed events re-read the page; a failed read is retried too.
      onOpen() { if (opened++ > 0 || !first) refresh(); },
    });
    setInterval(load, REFRESH_MS); // heartbeats are not feed events: keep "last heartbeat" honest
  });
})();
