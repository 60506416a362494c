/* Discover: the tool discovery would choose for an operation now, and every declaring
 * tool's verdict (the API's own explanation), re-read as the registry changes. */
"use strict";

(function () {
  const C = window.Console;
  const { $, el } = C;
  const operation = (new URLSearchParams(location.search).get("op") || "").trim();
  let seq = 0;

  function when(iso) {
    if (!iso) return "—";
    return el("span", null, [C.timeEl(iso, "clock"), " (", C.timeEl(iso), ")"]);
  }

  async function explain() {
    const mine = ++seq;
    const op = encodeURIComponent(operation);
    const [chosen, account] = await Promise.allSettled([
      C.api("GET", "/v1/discover/" + op),
      C.api("GET", "/v1/discover/" + op + "/explain?limit=1000"),
    ]);
    if (mine !== seq) return;
    const errors = $("errors");
    if (account.status === "rejected") {
      $("result").hidden = true;
      C.showProblem(errors, account.reason);
      return;
    }
    C.hideProblem(errors);
    const choice = $("choice");
    C.clear(choice);
    if (chosen.status === "fulfilled") {
      choice.dataset.chosen = chosen.value.tool_id;
      choice.append("Discovery would choose ", C.toolLink(chosen.value.tool_id), " now.");
    } else if (chosen.reason.status === 404) {
      choice.dataset.chosen = "";
      choice.append(el("strong", { text: "No routable tool. " }), chosen.reason.problem.detail || "");
    } else {
      choice.dataset.chosen = "";
      choice.append("Discovery failed: " + chosen.reason.message);
    }
    const data = account.value;
    $("summary").textContent = data.summary + " (" + data.declared + " declared, " + data.routable + " routable)";
    const body = $("verdicts-body");
    C.clear(body);
    for (const v of data.tools) {
      body.append(el("tr", { dataset: { toolId: v.tool_id, reason: v.reason } }, [
        el("th", { scope: "row" }, C.toolLink(v.tool_id)),
        el("td", null, el("span", { className: "badge " + v.reason, text: v.reason.replace("_", " ") })),
        el("td", { text: v.detail }),
        el("td", null, when(v.since)),
        el("td", null, when(v.until)),
      ]));
    }
    $("result").hidden = false;
    document.body.dataset.loadedAt = String(Date.now());
  }

  C.start(function () {
    $("d-operation").value = operation;
    if (!operation) { C.follow({ onEvent() {} }); return; }
    explain();
    const refresh = C.debounce(explain, 200, 1000);
    C.follow({ onEvent: refresh, onResync: explain, onOpen: refresh });
    setInterval(explain, 5000); // heartbeats age and ejections end without a feed event
  });
})();
