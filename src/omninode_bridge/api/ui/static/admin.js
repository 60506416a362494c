/* Admin: tokens (listed without secrets, created with the secret shown once, revoked)
 * and deleting a tool. Without a token the page is read-only; the API decides the rest. */
"use strict";

(function () {
  const C = window.Console;
  const { $, el } = C;

  function enable(on) {
    for (const id of ["create-token", "delete-submit"]) $(id).disabled = !on;
  }

  function describe(who) {
    const state = $("admin-state");
    if (!who) {
      state.textContent = "Read-only: enter an admin token to manage tokens and delete tools. It stays in this tab's session storage only (never in a URL or a cookie) and is forgotten when the tab closes.";
    } else if (who.scope !== "admin") {
      state.textContent = "Token " + who.name + " has scope " + who.scope + ": the registry refuses admin actions to it. Enter an admin token to manage tokens.";
    } else {
      state.textContent = "Using admin token " + who.name + " (this tab only).";
    }
  }

  async function listTokens() {
    const table = $("tokens");
    const error = $("tokens-error");
    let tokens;
    try {
      tokens = await C.api("GET", "/v1/tokens");
    } catch (e) {
      table.hidden = true;
      error.textContent = "Tokens not listed: " + e.message;
      error.hidden = false;
      return;
    }
    error.hidden = true;
    $("tokens-note").hidden = true;
    const body = $("tokens-body");
    C.clear(body);
    for (const t of tokens) {
      const revoke = el("button", { type: "button", className: "secondary", text: "Revoke", "aria-label": "Revoke token " + t.name });
      revoke.addEventListener("click", async () => {
        if (revoke.dataset.armed !== "yes") {
          revoke.dataset.armed = "yes";
          revoke.textContent = "Confirm revoke";
          revoke.className = "danger-button";
          return;
        }
        try {
          await C.api("DELETE", "/v1/tokens/" + encodeURIComponent(t.name));
        } catch (e) {
          error.textContent = "Not revoked: " + e.message;
          error.hidden = false;
        }
        if (C.who() && C.who().name === t.name) { C.forgetToken(); location.reload(); return; }
        listTokens();
      });
      body.append(el("tr", { dataset: { name: t.name, scope: t.scope } }, [
        el("th", { scope: "row", text: t.name }),
        el("td", null, el("span", { className: "badge " + (t.scope === "admin" ? "critical" : "unknown"), text: t.scope })),
        el("td", null, C.timeEl(t.created_at)),
        el("td", null, C.timeEl(t.last_used_at)),
        el("td", null, revoke),
      ]));
    }
    table.hidden = false;
  }

  function wire() {
    $("admin-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const error = $("admin-error");
      try {
        await C.useToken($("admin-token").value);
        location.reload();
      } catch (e) {
        error.textContent = e.status === 401 ? "That token is not valid." : e.message;
        error.hidden = false;
      }
    });
    $("create-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const payload = { scope: $("new-scope").value };
      const name = $("new-name").value.trim();
      if (name) payload.name = name;
      const error = $("tokens-error");
      try {
        const created = await C.api("POST", "/v1/tokens", payload);
        $("secret-name").textContent = created.name + " (" + created.scope + ")";
        $("secret-value").textContent = created.secret;
        $("secret-box").hidden = false;
        $("new-name").value = "";
        error.hidden = true;
        $("secret-done").focus();
      } catch (e) {
        error.textContent = "Not created: " + (e.problem.errors ? e.problem.errors.map((x) => x.field + ": " + x.message).join("; ") : e.message);
        error.hidden = false;
      }
      listTokens();
    });
    $("secret-done").addEventListener("click", () => {
      $("secret-value").textContent = "";
      $("secret-box").hidden = true;
    });
    $("delete-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const toolId = $("delete-id").value.trim();
      const result = $("delete-result");
      try {
        await C.api("DELETE", "/v1/tools/" + encodeURIComponent(toolId));
        result.textContent = "Deleted " + toolId + ".";
        $("delete-id").value = "";
      } catch (e) {
        result.textContent = "Not deleted: " + e.message;
      }
    });
  }

  C.start(function () {
    wire();
    const who = C.who();
    describe(who);
    enable(Boolean(who));
    if (who) listTokens();
    C.follow({ onEvent() {} });
  });
})();
