"""The status page (GET /status): one self-contained HTML document, no build step, nothing
loaded from elsewhere (the Content-Security-Policy the handler sends forbids it). It asks
for an admin gateway key, keeps it in sessionStorage and reads GET /v1/status with it.
Everything shown is written as text nodes, never as HTML: model names come from clients."""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>freeapi status</title>
<style>
:root {
  --bg: #f6f7f9; --card: #fff; --fg: #1d232b; --muted: #68717d; --line: #e3e6ea;
  --ok: #2f9e62; --warn: #d98a00; --bad: #d64545; --info: #3b6fd8; --accent: #5b4bd6;
  --t-in: #3b6fd8; --t-out: #2f9e62; --t-cached: #9aa9c7; --t-reasoning: #b06ad9;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 14px; color: var(--fg); background: var(--bg);
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #11151b; --card: #1a2029; --fg: #e4e8ee; --muted: #97a1ae; --line: #2b333f;
          --t-cached: #55637e; }
}
* { box-sizing: border-box; }
body { margin: 0; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 16px;
         padding: 12px 20px; background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { font-size: 18px; margin: 0; letter-spacing: .2px; }
header h1 span { color: var(--accent); }
.meta { color: var(--muted); display: flex; flex-wrap: wrap; gap: 4px 14px; flex: 1; }
.meta b { color: var(--fg); font-weight: 600; }
button, .seg button { font: inherit; border: 1px solid var(--line); background: var(--card);
         color: var(--fg); border-radius: 6px; padding: 5px 10px; cursor: pointer; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
main { padding: 16px 20px 40px; max-width: 1280px; margin: 0 auto; display: grid; gap: 16px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
        padding: 14px 16px; min-width: 0; }
.card h2 { font-size: 15px; margin: 0 0 10px; display: flex; align-items: center; gap: 10px;
           flex-wrap: wrap; }
.card h2 small { color: var(--muted); font-weight: 400; font-size: 12px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
        padding: 12px 14px; }
.tile .v { font-size: 22px; font-weight: 650; margin-top: 2px; }
.tile .l { color: var(--muted); font-size: 12px; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line);
         white-space: nowrap; }
th { color: var(--muted); font-weight: 500; font-size: 12px; }
td.num, th.num { text-align: right; }
tr:last-child td { border-bottom: none; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px;
         font-weight: 600; color: #fff; }
.s-ok { background: var(--ok); } .s-cooldown { background: var(--warn); }
.s-invalid, .s-no_balance { background: var(--bad); }
.chip { display: inline-block; padding: 0 6px; margin-right: 4px; border-radius: 4px;
        font-size: 11px; background: color-mix(in srgb, var(--bad) 15%, transparent);
        color: var(--bad); }
.muted { color: var(--muted); }
.err { color: var(--bad); }
.bar { position: relative; height: 8px; border-radius: 4px; background: var(--line);
       min-width: 90px; overflow: hidden; }
.bar i { position: absolute; left: 0; top: 0; bottom: 0; background: var(--ok); }
.bar i.hi { background: var(--warn); } .bar i.full { background: var(--bad); }
.limit { display: grid; grid-template-columns: 1fr; gap: 2px; font-size: 12px; }
.seg { display: inline-flex; border: 1px solid var(--line); border-radius: 7px; overflow: hidden; }
.seg button { border: none; border-radius: 0; padding: 3px 10px; }
.seg button.on { background: var(--accent); color: #fff; }
.legend { display: flex; gap: 12px; flex-wrap: wrap; color: var(--muted); font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
            margin-right: 4px; vertical-align: -1px; }
svg text { fill: var(--muted); font-size: 10px; }
#chart svg, #tokens svg { display: block; max-width: 100%; height: auto; }
#login { max-width: 420px; margin: 12vh auto; }
#login input { width: 100%; font: inherit; padding: 9px 10px; border-radius: 7px;
               border: 1px solid var(--line); background: var(--bg); color: var(--fg);
               margin: 8px 0 12px; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
@media (max-width: 820px) { .two { grid-template-columns: 1fr; } }
@media (max-width: 560px) {
  main { padding: 10px 8px 30px; gap: 10px; }
  header { padding: 10px 12px; }
  .card { padding: 10px; }
  th, td { padding: 5px 6px; }
  .tile .v { font-size: 18px; }
  header .meta { order: 3; flex-basis: 100%; font-size: 12px; }
  header h1 { flex: 1; }
}
[hidden] { display: none !important; }
</style>
</head>
<body>
<header>
  <h1><span>freeapi</span> status</h1>
  <div class="meta" id="meta"></div>
  <button id="pause" type="button" hidden>Pause</button>
  <button id="logout" type="button" hidden>Sign out</button>
</header>

<section id="login" class="card" hidden>
  <h2>Admin gateway key</h2>
  <form id="login-form">
    <label for="key" class="muted">The page reads <code>GET /v1/status</code> with it. It stays in
      this tab's session storage only.</label>
    <input id="key" name="key" type="password" autocomplete="off" required
           placeholder="an auth.keys entry with role: admin">
    <button class="primary" type="submit">Open status</button>
    <p id="login-error" class="err" hidden></p>
  </form>
</section>

<main id="app" hidden>
  <p id="problem" class="err card" hidden></p>
  <div class="tiles" id="tiles"></div>
  <section class="card">
    <h2>Requests, last 24 hours <small>15-minute bars, all workers</small></h2>
    <div class="legend"><span><i style="background:var(--ok)"></i>answered</span>
      <span><i style="background:var(--bad)"></i>failed</span></div>
    <div id="chart"></div>
  </section>
  <section class="card">
    <h2>Vendor keys <small id="keys-note"></small></h2>
    <div class="scroll"><table id="keys"></table></div>
  </section>
  <section class="card">
    <h2>Models <span class="seg" id="window"><button type="button" data-w="hour" class="on">Last hour</button><button type="button" data-w="day">Last 24 h</button></span></h2>
    <div class="scroll"><table id="models"></table></div>
    <h2 style="margin-top:14px">Tokens by model</h2>
    <div class="legend"><span><i style="background:var(--t-in)"></i>input</span>
      <span><i style="background:var(--t-cached)"></i>of which cached</span>
      <span><i style="background:var(--t-out)"></i>output</span>
      <span><i style="background:var(--t-reasoning)"></i>of which reasoning</span></div>
    <div id="tokens"></div>
  </section>
  <section class="card">
    <h2>Gateway keys <small>usage against limits (from the ledger)</small></h2>
    <div class="scroll"><table id="gwkeys"></table></div>
  </section>
  <section class="card">
    <h2>Latest requests <small>no prompt or answer text is kept</small></h2>
    <div class="scroll"><table id="recent"></table></div>
  </section>
</main>

<script>
"use strict";
(function () {
  var STORE = "freeapi-admin-key", REFRESH_MS = 10000;
  var state = { window: "hour", data: null, timer: null, paused: false };
  var $ = function (id) { return document.getElementById(id); };
  var SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs) {
    var node = document.createElement(tag);
    for (var k in (attrs || {})) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "cls") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    return node;
  }
  function fmtInt(n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString(); }
  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "—";
    return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  }
  function fmtSecs(s) {
    if (s === null || s === undefined) return "—";
    s = Math.round(s);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor(s % 3600 / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h";
  }
  function fmtTokens(n) {
    if (!n) return "0";
    if (n >= 1e9) return (n / 1e9).toFixed(2) + "B";
    if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return String(n);
  }
  function clock(ts) {
    var d = new Date(ts * 1000);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  function table(node, heads, rows, empty) {
    node.textContent = "";
    var tr = el("tr");
    heads.forEach(function (h) {
      tr.appendChild(el("th", { text: h.replace(/^#/, ""), cls: h[0] === "#" ? "num" : "" }));
    });
    node.appendChild(el("thead", null, tr));
    var body = el("tbody");
    if (!rows.length) {
      body.appendChild(el("tr", null, el("td", { colspan: heads.length, cls: "muted",
                                                 text: empty })));
    }
    rows.forEach(function (cells) {
      var row = el("tr");
      cells.forEach(function (c, i) {
        var td = el("td", { cls: heads[i][0] === "#" ? "num" : "" });
        if (c !== null && typeof c === "object") td.appendChild(c);
        else td.textContent = c === null || c === undefined ? "—" : String(c);
        row.appendChild(td);
      });
      body.appendChild(row);
    });
    node.appendChild(body);
  }

  // -- sign-in ------------------------------------------------------------------------
  function key() { return sessionStorage.getItem(STORE); }
  function showLogin(message) {
    stop();
    $("app").hidden = true; $("logout").hidden = true; $("pause").hidden = true;
    $("login").hidden = false;
    $("login-error").hidden = !message;
    $("login-error").textContent = message || "";
    $("key").focus();
  }
  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var value = $("key").value.trim();
    if (!value) return;
    sessionStorage.setItem(STORE, value);
    $("key").value = "";
    load();
  });
  $("logout").addEventListener("click", function () {
    sessionStorage.removeItem(STORE);
    showLogin("");
  });
  $("pause").addEventListener("click", function () {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Resume" : "Pause";
    if (!state.paused) load();
  });
  $("window").addEventListener("click", function (ev) {
    var w = ev.target.getAttribute("data-w");
    if (!w) return;
    state.window = w;
    Array.prototype.forEach.call($("window").children, function (b) {
      b.className = b.getAttribute("data-w") === w ? "on" : "";
    });
    if (state.data) renderModels(state.data);
  });

  // -- loading ------------------------------------------------------------------------
  function stop() { if (state.timer) { clearTimeout(state.timer); state.timer = null; } }
  function schedule() {
    stop();
    state.timer = setTimeout(function () {
      if (!document.hidden && !state.paused) load(); else schedule();
    }, REFRESH_MS);
  }
  function load() {
    var k = key();
    if (!k) { showLogin(""); return; }
    fetch("/v1/status", { headers: { "Authorization": "Bearer " + k }, cache: "no-store" })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (body) {
          return { status: resp.status, body: body };
        });
      })
      .then(function (r) {
        if (r.status === 401 || r.status === 403) {
          sessionStorage.removeItem(STORE);
          var msg = (r.body.error && r.body.error.message) || "This key may not read the status.";
          showLogin(msg);
          return;
        }
        if (r.status !== 200) {
          problem("The gateway answered " + r.status + ": " +
                  ((r.body.error && r.body.error.message) || "no details"));
          schedule();
          return;
        }
        problem("");
        state.data = r.body;
        render(r.body);
        schedule();
      })
      .catch(function (e) {
        problem("Cannot reach the gateway (" + e.message + "); retrying.");
        schedule();
      });
  }
  function problem(text) {
    $("problem").hidden = !text;
    $("problem").textContent = text;
  }

  // -- rendering ----------------------------------------------------------------------
  function render(d) {
    $("login").hidden = true; $("app").hidden = false;
    $("logout").hidden = false; $("pause").hidden = false;
    renderMeta(d);
    renderTiles(d);
    renderChart(d.slots || []);
    renderKeys(d.keys || []);
    renderModels(d);
    renderGatewayKeys(d.gateway_keys || []);
    renderRecent(d.recent || []);
    if (d.error) problem(d.error);
  }
  function renderMeta(d) {
    var m = $("meta");
    m.textContent = "";
    [["version", d.version], ["up", fmtSecs(d.uptime_s)],
     ["workers", d.workers], ["pid", d.pid], ["updated", clock(d.now)]]
      .forEach(function (p) { m.appendChild(el("span", null, p[0] + " ", el("b", { text: p[1] }))); });
    if (d.draining) m.appendChild(el("span", { cls: "err", text: "draining (shutting down)" }));
  }
  function sum(list, f) { return list.reduce(function (a, x) { return a + f(x); }, 0); }
  function errorsOf(m) { var n = 0; for (var k in m.errors) n += m.errors[k]; return n; }
  function renderTiles(d) {
    var hour = (d.models && d.models.hour) || [], day = (d.models && d.models.day) || [];
    var req = sum(hour, function (m) { return m.requests; });
    var err = sum(hour, errorsOf);
    var keys = d.keys || [];
    var healthy = keys.filter(function (k) { return k.state === "ok"; }).length;
    var tokensDay = sum(day, function (m) { return m.tokens.input + m.tokens.output; });
    var inflight = sum(keys, function (k) { return k.in_flight; });
    var tiles = [
      ["Requests, last hour", fmtInt(req)],
      ["Failed, last hour", req ? fmtInt(err) + " (" + (100 * err / req).toFixed(1) + "%)" : "0"],
      ["Vendor keys healthy", keys.length ? healthy + " / " + keys.length : "pass-through"],
      ["In flight (this worker)", fmtInt(inflight)],
      ["Tokens, last 24 h", fmtTokens(tokensDay)]
    ];
    var t = $("tiles");
    t.textContent = "";
    tiles.forEach(function (x) {
      t.appendChild(el("div", { cls: "tile" }, el("div", { cls: "l", text: x[0] }),
                       el("div", { cls: "v", text: x[1] })));
    });
  }
  function renderChart(slots) {
    var box = $("chart");
    box.textContent = "";
    // Drawn at the box's real width, so labels keep their size on a phone.
    var W = Math.max(280, box.clientWidth || 960), H = W < 600 ? 110 : 150, pad = 22;
    var n = slots.length || 1, every = W < 600 ? 32 : 16;
    var max = Math.max(1, Math.max.apply(null, slots.map(function (s) { return s.ok + s.errors; })));
    var root = svg("svg", { viewBox: "0 0 " + W + " " + (H + pad), width: W, height: H + pad,
                            role: "img", "aria-label": "requests per 15 minutes" });
    var bw = W / n;
    [0.5, 1].forEach(function (f) {
      root.appendChild(svg("line", { x1: 0, x2: W, y1: H - H * f + 0.5, y2: H - H * f + 0.5,
                                     stroke: "currentColor", "stroke-opacity": 0.08 }));
    });
    var top = svg("text", { x: 2, y: 10 }); top.textContent = fmtInt(max); root.appendChild(top);
    slots.forEach(function (s, i) {
      var okH = H * s.ok / max, errH = H * s.errors / max;
      var title = svg("title", {});
      title.textContent = clock(s.start) + ": " + s.ok + " answered, " + s.errors + " failed";
      if (s.ok) {
        var r = svg("rect", { x: i * bw + 1, y: H - okH, width: Math.max(1, bw - 2), height: okH,
                              rx: 1.5, fill: "var(--ok)" });
        r.appendChild(title.cloneNode(true)); root.appendChild(r);
      }
      if (s.errors) {
        var e = svg("rect", { x: i * bw + 1, y: H - okH - errH, width: Math.max(1, bw - 2),
                              height: errH, rx: 1.5, fill: "var(--bad)" });
        e.appendChild(title); root.appendChild(e);
      }
      if (i % every === 0) {
        var label = svg("text", { x: i * bw + 1, y: H + 15 });
        label.textContent = new Date(s.start * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
        root.appendChild(label);
      }
    });
    box.appendChild(root);
  }
  function renderKeys(keys) {
    $("keys-note").textContent = keys.length ?
      "this worker's view; cooldowns and verdicts are shared through the state store" :
      "";
    table($("keys"), ["Provider", "Key", "State", "#In flight / max", "#Queue", "Last error",
                      "#Cooldown left", "#Next re-check"],
      keys.map(function (k) {
        var last = k.last_error ? k.last_error + (k.last_error_at ?
          " (" + fmtSecs(Date.now() / 1000 - k.last_error_at) + " ago)" : "") : "—";
        return [k.provider, el("code", { text: k.id }),
                el("span", { cls: "badge s-" + k.state, text: k.state.replace("_", " ") }),
                k.in_flight + " / " + (k.max_concurrency || "∞"), k.queue, last,
                k.cooldown_remaining ? fmtSecs(k.cooldown_remaining) : "—",
                k.next_check_in === null ? "—" : "in " + fmtSecs(k.next_check_in)];
      }), "No server-side vendor keys: clients bring their own (pass-through).");
  }
  function renderModels(d) {
    var models = (d.models && d.models[state.window]) || [];
    table($("models"), ["Model", "#Requests", "Errors", "#TTFT p50", "#TTFT p95",
                        "#Latency p50", "#Latency p95", "#Input", "#Cached", "#Output",
                        "#Reasoning"],
      models.map(function (m) {
        var chips = el("span");
        var names = Object.keys(m.errors).sort();
        if (!names.length) chips.appendChild(el("span", { cls: "muted", text: "none" }));
        names.forEach(function (c) {
          chips.appendChild(el("span", { cls: "chip", text: c.replace("_", " ") + " " + m.errors[c] }));
        });
        return [m.model, fmtInt(m.requests), chips, fmtMs(m.ttft_ms.p50), fmtMs(m.ttft_ms.p95),
                fmtMs(m.latency_ms.p50), fmtMs(m.latency_ms.p95), fmtTokens(m.tokens.input),
                fmtTokens(m.tokens.cached), fmtTokens(m.tokens.output),
                fmtTokens(m.tokens.reasoning)];
      }), state.window === "hour" ? "No requests in the last hour." : "No requests in the last 24 hours.");
    renderTokens(models);
  }
  function renderTokens(models) {
    var box = $("tokens");
    box.textContent = "";
    var rows = models.filter(function (m) { return m.tokens.input + m.tokens.output > 0; })
                     .slice(0, 12);
    if (!rows.length) { box.appendChild(el("p", { cls: "muted", text: "No tokens reported." })); return; }
    var max = Math.max.apply(null, rows.map(function (m) { return m.tokens.input + m.tokens.output; }));
    var W = Math.max(280, box.clientWidth || 960), row = 24, H = rows.length * row;
    var label = Math.min(220, Math.round(W * 0.32));
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img",
                            "aria-label": "tokens by model" });
    rows.forEach(function (m, i) {
      var y = i * row + 4, scale = (W - label - 70) / max, x = label;
      var name = svg("text", { x: 0, y: y + 12 });
      var fit = Math.max(8, Math.floor(label / 6.5));
      name.textContent = m.model.length > fit ? m.model.slice(0, fit - 1) + "…" : m.model;
      root.appendChild(name);
      [["input", "var(--t-in)"], ["output", "var(--t-out)"]].forEach(function (p) {
        var w = m.tokens[p[0]] * scale;
        var r = svg("rect", { x: x, y: y, width: Math.max(0, w), height: 16, fill: p[1], rx: 2 });
        var t = svg("title", {}); t.textContent = p[0] + ": " + fmtInt(m.tokens[p[0]]);
        r.appendChild(t); root.appendChild(r);
        var sub = p[0] === "input" ? m.tokens.cached : m.tokens.reasoning;
        if (sub) {
          var s = svg("rect", { x: x, y: y + 10, width: Math.max(0, Math.min(w, sub * scale)),
                                height: 6, fill: p[0] === "input" ? "var(--t-cached)" : "var(--t-reasoning)" });
          var st = svg("title", {});
          st.textContent = (p[0] === "input" ? "cached: " : "reasoning: ") + fmtInt(sub);
          s.appendChild(st); root.appendChild(s);
        }
        x += w;
      });
      var total = svg("text", { x: x + 6, y: y + 12 });
      total.textContent = fmtTokens(m.tokens.input + m.tokens.output);
      root.appendChild(total);
    });
    box.appendChild(root);
  }
  function limitCell(used, limit) {
    if (!limit) return el("span", { cls: "muted", text: fmtTokens(used) + " (no limit)" });
    var f = Math.min(1, used / limit);
    var bar = el("div", { cls: "bar" }, el("i", { cls: f >= 1 ? "full" : f >= 0.8 ? "hi" : "",
                                                   style: "width:" + (100 * f).toFixed(1) + "%" }));
    return el("div", { cls: "limit" }, el("span", { text: fmtTokens(used) + " / " + fmtTokens(limit) }), bar);
  }
  function renderGatewayKeys(keys) {
    table($("gwkeys"), ["Key", "Role", "Models", "Requests/min", "Tokens/min", "Tokens today (UTC)",
                        "Tokens this month"],
      keys.map(function (k) {
        return [k.name, k.role, k.models ? k.models.join(", ") : "all",
                limitCell(k.used.rpm, k.limits.rpm), limitCell(k.used.tpm, k.limits.tpm),
                limitCell(k.used.daily_tokens, k.limits.daily_tokens),
                limitCell(k.used.monthly_tokens, k.limits.monthly_tokens)];
      }), "No gateway keys configured.");
  }
  function renderRecent(rows) {
    table($("recent"), ["Time", "Request id", "Key", "Model", "Served by", "Status", "#Latency",
                        "#First byte", "#Tokens in / out"],
      rows.map(function (r) {
        var status = el("span", { cls: r.status >= 400 || r.error ? "err" : "",
                                  text: r.status + (r.error ? " " + r.error : "") + (r.stream ? " · stream" : "") });
        var served = r.provider ? r.provider + "/" + (r.upstream_model || "?") +
          (r.vendor_key && r.vendor_key !== "-" ? " (" + r.vendor_key + ")" : "") : "—";
        return [clock(r.ts), el("code", { text: r.request_id || "—" }), r.key || r.vendor_key || "—",
                r.model, served, status, fmtMs(r.latency_ms), fmtMs(r.ttfb_ms),
                fmtInt(r.prompt_tokens) + " / " + fmtInt(r.completion_tokens)];
      }), "No requests yet.");
  }

  var resized = null;
  window.addEventListener("resize", function () {
    clearTimeout(resized);
    resized = setTimeout(function () {
      if (state.data && !$("app").hidden) { renderChart(state.data.slots || []); renderModels(state.data); }
    }, 150);
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && key() && !state.paused) load();
  });
  load();
})();
</script>
</body>
</html>
"""
