/* A tool's page: registration, health now, a timeline (24 h by default) from the health history,
 * its recent changes; re-read whenever the change feed mentions it. */
"use strict";

(function () {
  const C = window.Console;
  const { $, el } = C;
  const SVG = "http://www.w3.org/2000/svg";
  const params = new URLSearchParams(location.search);
  const toolId = params.get("id") || "";
  const WINDOWS = ["24", "6", "1", "0.25", "0.05"];
  let hours = WINDOWS.includes(params.get("hours")) ? params.get("hours") : "24";
  const path = "/v1/tools/" + encodeURIComponent(toolId);
  const LANES = [["heartbeat", "Heartbeat"], ["checks", "Checks"]];
  let seq = 0;

  function svg(tag, attrs, children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children || []) if (child) node.append(child);
    return node;
  }

  function json(id, value) {
    // Escaped as JSON escapes them: the text is still the JSON of the value.
    $(id).textContent = value === null || value === undefined ? "—" : C.visible(JSON.stringify(value, null, 2));
  }

  function renderSummary(tool) {
    $("summary").hidden = false;
    const health = tool.health;
    const badge = $("s-health");
    badge.className = "badge " + health.status;
    badge.textContent = health.status;
    C.clear($("s-heartbeat"));
    $("s-heartbeat").append(health.heartbeat_fresh ? "fresh, " : "stale, ", C.timeEl(tool.last_heartbeat));
    C.clear($("s-checks"));
    $("s-checks").append(health.check_status);
    if (health.check_since) $("s-checks").append(" since ", C.timeEl(health.check_since));
    $("s-node-type").textContent = tool.node_type;
    C.clear($("s-registered"));
    $("s-registered").append(C.timeEl(tool.registered_at));
    C.clear($("s-updated"));
    $("s-updated").append(C.timeEl(tool.updated_at));
    json("j-capabilities", tool.capabilities);
    json("j-endpoints", tool.endpoints);
    json("j-metadata", tool.metadata);
    json("j-health-endpoint", tool.health_endpoint);
  }

  function renderTimeline(history) {
    const box = $("timeline");
    C.clear(box);
    const start = new Date(history.start).getTime();
    const end = new Date(history.end).getTime();
    const left = 100, right = 990, span = Math.max(1, end - start);
    const x = (iso) => left + ((Math.min(end, Math.max(start, new Date(iso).getTime())) - start) / span) * (right - left);
    const laneY = { heartbeat: 14, checks: 50 };
    const laneHeight = 26;
    const chart = svg("svg", { viewBox: "0 0 1000 104", role: "img", "aria-labelledby": "timeline-svg-title", id: "timeline-svg" }, [
      svg("title", { id: "timeline-svg-title", text: "Heartbeat freshness and check results of " + toolId + " over the window; the transitions are listed below." }),
    ]);
    const TICKS = 8;
    const seconds = span < 3600 * 1000;
    for (let i = 0; i <= TICKS; i += 1) {
      const at = start + (i / TICKS) * span;
      const tx = left + (i / TICKS) * (right - left);
      chart.append(svg("line", { x1: tx, x2: tx, y1: 8, y2: 82, class: "tick" }));
      const label = new Date(at).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: seconds ? "2-digit" : undefined, hour12: false });
      const anchor = i === 0 ? "start" : i === TICKS ? "end" : "middle";
      chart.append(svg("text", { x: tx, y: 98, "text-anchor": anchor, class: "tick-label", text: label }));
    }
    for (const [lane, label] of LANES) {
      chart.append(svg("text", { x: 4, y: laneY[lane] + 18, class: "lane-label", text: label }));
    }
    for (const band of history.bands) {
      const x0 = x(band.start), x1 = x(band.end);
      chart.append(svg("rect", {
        x: x0.toFixed(2), y: laneY[band.lane], width: Math.max(1.5, x1 - x0).toFixed(2), height: laneHeight,
        class: "band " + band.state, "data-lane": band.lane, "data-state": band.state,
      }, [svg("title", { text: band.lane + " " + band.state + ": " + C.clock(band.start) + " – " + C.clock(band.end) })]));
    }
    for (const t of history.transitions) {
      const tx = x(t.at);
      const y = laneY[t.lane];
      chart.append(svg("line", { x1: tx, x2: tx, y1: y - 3, y2: y + laneHeight + 3, class: "transition-mark" }));
    }
    box.append(chart);

    const list = $("transitions");
    C.clear(list);
    if (!history.transitions.length) list.append(el("li", { className: "note", text: "No transition in this window." }));
    for (const t of history.transitions.slice().reverse()) {
      list.append(el("li", { dataset: { lane: t.lane, previous: t.previous, state: t.state } }, [
        C.timeEl(t.at, "clock"),
        el("span", { className: "what", text: t.lane + ": " + t.previous + " → " + t.state }),
        el("span", { className: "badge " + t.state, text: t.kind }),
        t.reason ? el("span", { className: "note", text: t.reason }) : null,
      ]));
    }

    const changes = $("changes");
    C.clear(changes);
    if (!history.events.length) changes.append(el("li", { className: "note", text: "The change feed keeps no event of this tool." }));
    for (const e of history.events) {
      changes.append(el("li", { dataset: { kind: e.kind } }, [
        C.timeEl(e.occurred_at, "clock"),
        el("span", { className: "badge " + (e.kind === "created" || e.kind === "healthy" ? "healthy" : e.kind === "deleted" ? "absent" : e.kind === "updated" ? "unknown" : e.kind), text: e.kind }),
        e.reason ? el("span", { className: "note", text: e.reason }) : null,
      ]));
    }
  }

  async function load() {
    const mine = ++seq;
    const [tool, history] = await Promise.allSettled([C.api("GET", path), C.api("GET", path + "/history?hours=" + hours)]);
    if (mine !== seq) return;
    const errors = $("errors");
    C.hideProblem(errors);
    if (tool.status === "fulfilled") {
      renderSummary(tool.value);
    } else {
      $("summary").hidden = true;
      C.showProblem(errors, tool.reason);
      for (const id of ["j-capabilities", "j-endpoints", "j-metadata", "j-health-endpoint"]) $(id).textContent = "—";
    }
    if (history.status === "fulfilled") renderTimeline(history.value);
    else if (tool.status === "fulfilled") C.showProblem(errors, history.reason);
    document.body.dataset.loadedAt = String(Date.now());
  }

  const refresh = C.debounce(load, 100, 800);

  function wireAdmin() {
    const who = C.who();
    if (!who || who.scope !== "admin") return;
    $("admin-tool").hidden = false;
    $("delete-tool").addEventListener("click", () => { $("delete-confirm").hidden = false; $("delete-yes").focus(); });
    $("delete-no").addEventListener("click", () => { $("delete-confirm").hidden = true; $("delete-tool").focus(); });
    $("delete-yes").addEventListener("click", async () => {
      $("delete-confirm").hidden = true;
      try {
        await C.api("DELETE", path);
        $("delete-result").textContent = "Deleted " + toolId + ".";
      } catch (e) {
        $("delete-result").textContent = "Not deleted: " + e.message;
      }
      load();
    });
  }

  C.start(function () {
    $("tool-title").textContent = toolId ? C.visible(toolId) : "(no tool id given)";
    document.title = toolId + " · toolreg console";
    if (!toolId) return;
    wireAdmin();
    $("window").value = hours;
    $("window").addEventListener("change", () => {
      hours = $("window").value;
      const next = new URLSearchParams(location.search);
      next.set("hours", hours);
      window.history.replaceState(null, "", "?" + next.toString());
      load();
    });
    load();
    let opened = 0;
    C.follow({
      onEvent(event) { if (event.tool_id === toolId) refresh(); },
      onResync: load,
      onOpen() { if (opened++ > 0) refresh(); else load(); }, // nothing between the read and the stream is missed
    });
    setInterval(load, 30000); // the bands reach "now"
  });
})();
