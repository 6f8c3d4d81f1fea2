/* The Postage page: fetches its JSON routes, fills the tables and charts, and starts a funding DAG run
   through Airflow's REST API with the user's own session. Every value goes in with textContent. */
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("postage-config").textContent);
  // The page is at <airflow>/postage/ui: Airflow's own UI and REST API are two levels up.
  var airflowBase = new URL("../", new URL(".", window.location.href)).href;

  /* --- theme: the Airflow UI's mode when the page is inside it, else the system's ---------------- */
  function followParentTheme() {
    try {
      var root = window.parent !== window ? window.parent.document.documentElement : null;
      if (!root) return;
      var apply = function () {
        var dark = root.classList.contains("dark") || root.style.colorScheme === "dark";
        var light = root.classList.contains("light") || root.style.colorScheme === "light";
        if (dark) document.documentElement.setAttribute("data-theme", "dark");
        else if (light) document.documentElement.setAttribute("data-theme", "light");
        else document.documentElement.removeAttribute("data-theme");
      };
      apply();
      new MutationObserver(apply).observe(root, { attributes: true, attributeFilter: ["class", "style"] });
    } catch (e) { /* another origin: prefers-color-scheme decides */ }
  }
  followParentTheme();

  /* --- helpers -------------------------------------------------------------------------------------- */
  function node(tag, attrs, text) {
    var n = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "class") n.className = attrs[k]; else n.setAttribute(k, attrs[k]);
    });
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }
  function cell(row, text, cls) { var td = node("td", cls ? { class: cls } : {}, text); row.appendChild(td); return td; }
  function when(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit"
    });
  }
  function money(amount, currency) { return amount === null || amount === undefined ? "" : amount + " " + (currency || ""); }
  function runLink(dagId, runId) {
    return airflowBase + "dags/" + encodeURIComponent(dagId) + "/runs/" + encodeURIComponent(runId);
  }
  // A link into the Airflow UI. Its iframe sandbox has no "allow-top-navigation", so the UI around the page
  // is moved by its own router (same origin: its history, then a popstate); alone, the frame navigates.
  function uiLink(href, text) {
    var a = node("a", { href: href, class: "ui-link" }, text);
    a.addEventListener("click", function (event) {
      if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
      try {
        var top = window.parent;
        if (top !== window && top.location.origin === window.location.origin) {
          event.preventDefault();
          top.history.pushState(null, "", new URL(href, window.location.href).pathname);
          top.dispatchEvent(new PopStateEvent("popstate", { state: null }));
        }
      } catch (e) { /* another origin: the frame itself navigates */ }
    });
    return a;
  }
  function getJSON(path) {
    return fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error(r.status + " " + r.statusText);
      return r.json();
    });
  }
  function replaceBody(table, rows, columns, empty) {
    var body = table.tBodies[0];
    body.textContent = "";
    if (!rows.length) {
      var tr = node("tr"); var td = cell(tr, empty, "muted"); td.colSpan = columns; body.appendChild(tr);
    }
    rows.forEach(function (tr) { body.appendChild(tr); });
  }

  /* --- accounts ------------------------------------------------------------------------------------- */
  var currencies = {};
  function renderAccounts(data) {
    var rows = [];
    data.connections.forEach(function (conn) {
      var provider = conn.provider;
      if (conn.error) {
        var tr = node("tr", { class: "account-error", "data-conn-id": conn.conn_id });
        cell(tr, conn.conn_id, "mono"); cell(tr, provider);
        var td = cell(tr, conn.error, "error"); td.colSpan = 2;
        cell(tr, when(conn.read_at));
        rows.push(tr);
        return;
      }
      conn.accounts.forEach(function (account) {
        currencies[conn.conn_id + "/" + account.account_type] = account.currency;
        var tr = node("tr", { class: "account", "data-conn-id": conn.conn_id, "data-account-type": account.account_type });
        cell(tr, conn.conn_id, "mono");
        cell(tr, provider);
        cell(tr, account.account_type.replace(/_/g, " ") + (account.account_number ? " " + account.account_number : ""));
        cell(tr, money(account.available, account.currency), "num available");
        cell(tr, when(account.as_of));
        rows.push(tr);
      });
    });
    replaceBody(document.getElementById("accounts"), rows, 5,
      "No connection of a postage type (" + (data.conn_types || []).join(", ") + ") that you may read.");
    document.getElementById("refresh-note").textContent =
      "Balances are read at most once every " + Math.round(data.refresh_seconds) + " s, however many people look" +
      " (last read " + when(data.connections.map(function (c) { return c.read_at; }).sort().pop()) + ").";
  }

  /* --- chart and purchases ------------------------------------------------------------------------- */
  function renderCharts(series) {
    var box = document.getElementById("charts");
    box.textContent = "";
    if (!series.length) { box.appendChild(node("p", { class: "muted" }, "No balance read yet.")); return; }
    series.forEach(function (s) {
      var currency = currencies[s.id] || s.currency || "";
      var figure = node("figure", { class: "chart", "data-series": s.id });
      figure.style.margin = "0";
      figure.appendChild(node("h3", {}, s.conn_id + " · " + s.account_type.replace(/_/g, " ") + " (" + currency + ")"));
      box.appendChild(figure);
      window.PostageChart.draw(figure, {
        label: "Available balance of " + s.id + " over time, purchases marked",
        points: s.points.map(function (p) {
          return { t: Date.parse(p.at), y: Number(p.available), title: when(p.at) + ": " + p.available + " " + currency };
        }),
        marks: s.purchases.map(function (m) {
          return {
            t: Date.parse(m.at), y: m.balance === null ? null : Number(m.balance), cls: m.status,
            title: when(m.at) + ": " + m.status + " " + (m.amount || "?") + " " + currency +
              (m.transaction_id ? " (" + m.transaction_id + ")" : "")
          };
        })
      });
    });
  }

  function renderPurchases(purchases, errors) {
    var rows = purchases.map(function (p) {
      var tr = node("tr", { class: "purchase" });
      cell(tr, when(p.at));
      cell(tr, p.conn_id || p.account, "mono");
      cell(tr, money(p.amount, p.currency), "num");
      cell(tr, "").appendChild(node("span", { class: "badge " + p.status }, p.status.replace(/_/g, " ")));
      cell(tr, p.transaction_id || "—", "mono");
      var run = cell(tr, "");
      if (p.dag_id && p.run_id) {
        run.appendChild(uiLink(runLink(p.dag_id, p.run_id), p.dag_id + " / " + p.run_id));
      } else run.textContent = "—";
      return tr;
    });
    replaceBody(document.getElementById("purchases"), rows, 6,
      "No purchase recorded yet (the operators keep a ledger per account in Airflow Variables).");
    var box = document.getElementById("ledger-errors");
    box.hidden = !errors.length;
    box.textContent = errors.map(function (e) { return e.key + ": " + e.error; }).join("; ");
  }

  /* --- top up --------------------------------------------------------------------------------------- */
  var dagInput = document.getElementById("top-up-dag");
  var button = document.getElementById("top-up-button");
  var statusLine = document.getElementById("top-up-status");
  dagInput.value = config.top_up_dag_id;

  function say(text, kind, link) {
    statusLine.textContent = text;
    statusLine.className = "status " + (kind || "");
    if (link) {
      statusLine.appendChild(document.createTextNode(" "));
      statusLine.appendChild(uiLink(link, "Open the run"));
    }
  }

  var checking = 0;
  function checkDag() {
    var dagId = dagInput.value.trim();
    var mine = ++checking;
    button.disabled = true;
    if (!dagId) { say("Name the DAG to run.", "warn"); return Promise.resolve(); }
    return getJSON("api/top-up?dag_id=" + encodeURIComponent(dagId)).then(function (info) {
      if (mine !== checking) return;
      if (!info.exists) { say("No DAG " + dagId + " in this Airflow.", "bad"); return; }
      if (!info.may_trigger) { say("You may not start runs of " + dagId + ".", "bad"); return; }
      button.disabled = false;
      say(info.is_paused ? dagId + " is paused: a run started now waits until it is unpaused." : "", info.is_paused ? "warn" : "");
    }).catch(function (e) { if (mine === checking) say("Cannot check " + dagId + ": " + e.message, "bad"); });
  }
  dagInput.addEventListener("change", checkDag);

  // The Airflow UI shows this page in a sandboxed iframe without "allow-modals": no window.confirm(), so the
  // confirmation is a second button.
  var confirmBox = document.getElementById("top-up-confirm");
  function disarm() { confirmBox.hidden = true; button.hidden = false; }
  document.getElementById("top-up-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var dagId = dagInput.value.trim();
    if (!dagId || button.disabled) return;
    document.getElementById("top-up-question").textContent =
      "Start a run of " + dagId + "? It buys credit for the accounts under their targets.";
    button.hidden = true;
    confirmBox.hidden = false;
    document.getElementById("top-up-go").focus();
  });
  document.getElementById("top-up-cancel").addEventListener("click", disarm);
  dagInput.addEventListener("input", disarm);
  document.getElementById("top-up-go").addEventListener("click", function () {
    var dagId = dagInput.value.trim();
    disarm();
    button.disabled = true;
    say("Starting " + dagId + "…");
    statusLine.removeAttribute("data-run-id");
    fetch(airflowBase + "api/v2/dags/" + encodeURIComponent(dagId) + "/dagRuns", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ logical_date: null, note: "Started from the Postage page by " + config.user })
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) {
          var detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || r.statusText);
          throw new Error(r.status + ": " + detail);
        }
        say("Run " + body.dag_run_id + " of " + dagId + " is " + body.state + ".", "ok", runLink(dagId, body.dag_run_id));
        statusLine.setAttribute("data-run-id", body.dag_run_id);
        setTimeout(refreshHistory, 5000);
      });
    }).catch(function (e) { say("Not started: " + e.message, "bad"); })
      .then(function () { button.disabled = false; });
  });

  // Funding DAGs the user can see (tag "postage") as suggestions; the configured one first.
  function suggestDags(extra) {
    var list = document.getElementById("top-up-dags");
    var ids = [config.top_up_dag_id].concat(extra || []);
    return getJSON(airflowBase + "api/v2/dags?tags=postage&limit=100").then(function (data) {
      (data.dags || []).forEach(function (d) { ids.push(d.dag_id); });
    }).catch(function () { /* suggestions only */ }).then(function () {
      list.textContent = "";
      ids.filter(function (id, n) { return id && ids.indexOf(id) === n; })
        .forEach(function (id) { list.appendChild(node("option", { value: id })); });
    });
  }

  /* --- loading -------------------------------------------------------------------------------------- */
  function refreshHistory() {
    return getJSON("api/history").then(function (data) {
      renderCharts(data.series);
      renderPurchases(data.purchases, data.ledger_errors);
      document.body.setAttribute("data-history-loaded", "true");
    }).catch(function (e) {
      document.getElementById("charts").textContent = "Cannot load the history: " + e.message;
    });
  }
  function refresh() {
    return getJSON("api/balances").then(renderAccounts).catch(function (e) {
      replaceBody(document.getElementById("accounts"), [], 5, "Cannot load the balances: " + e.message);
    }).then(function () {
      document.body.setAttribute("data-balances-loaded", "true");
      return refreshHistory();
    });
  }

  refresh();
  checkDag();
  suggestDags();
  setInterval(refresh, Math.max(10, config.refresh_seconds) * 1000);
})();
