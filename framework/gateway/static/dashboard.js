// The operations dashboard: polls GET /_framework/dashboard/state and draws it, with no library.
// The admin token (asked once, kept in sessionStorage) goes as `Authorization: Bearer` on every call.
"use strict";
(() => {
  const BASE = location.pathname.replace(/\/dashboard\/?$/, "");
  const TOKEN_KEY = "framework.admin-token";
  const POLL_MS = 1000;
  const WINDOW_S = 300;
  const COLORS = ["#2f6fde", "#d23f3f", "#2f9e5b", "#c98a00", "#8a4fd1", "#0f9bb0", "#e0628f", "#5b6478"];
  const $ = (sel) => document.querySelector(sel);

  let history = [];
  let lastT = null;
  let state = null;
  let dlq = null;            // the dead-letter queue shown
  let lastAction = "";       // what the last button did, shown above the messages
  let pinned = false;        // chosen by the user, so never switched automatically
  let dlqDepth = null;       // its depth when last peeked
  let peeked = [];           // its messages as last peeked
  const selected = new Set();
  let waitingForToken = false;

  class AuthError extends Error {}

  // --- DOM and formatting ----------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }
  const rate = (x) => (x ? x.toFixed(x < 10 ? 1 : 0) : "0");
  const ms = (s) => (s === null || s === undefined ? "–" : (s * 1000).toFixed(s < 0.01 ? 2 : 1) + " ms");
  const pct = (x) => (x === null || x === undefined ? "–" : (x * 100).toFixed(x < 0.1 ? 1 : 0) + " %");
  const clock = (t) => new Date(t * 1000).toLocaleTimeString();
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
  const color = (name) => {
    let h = 0;
    for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
    return COLORS[h % COLORS.length];
  };
  function fill(tbody, rows, empty, span) {
    tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: span, class: "empty" }, empty))]));
  }

  // --- the admin API ---------------------------------------------------------------------
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    // Every admin POST is JSON (the API refuses anything else), even one without options.
    if (method === "POST" && body === undefined) body = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(BASE + path, {
      method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    // A 403 is about the token only when one was sent; otherwise (another origin, a host or
    // address the admin API does not serve without a token) its detail says what to do.
    if (response.status === 401 || (response.status === 403 && token)) {
      askToken(response.status === 403 ? "That token was refused (403): try again." : null);
      throw new AuthError("admin token needed");
    }
    if (!response.ok) {
      const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail || data);
      throw new Error(`${response.status}: ${detail}`);
    }
    return data;
  }

  function askToken(why) {
    waitingForToken = true;
    if (why) $("#token-why").textContent = why;
    const dialog = $("#token-dialog");
    if (!dialog.open) dialog.showModal();
    $("#token-input").focus();
  }

  $("#token-form").addEventListener("submit", () => {
    sessionStorage.setItem(TOKEN_KEY, $("#token-input").value.trim());
    $("#token-input").value = "";
    waitingForToken = false;
    poll();
  });
  $("#token-button").addEventListener("click", () => askToken("Set the admin token for this tab."));

  function confirmAction(title, text) {
    const dialog = $("#confirm");
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    });
  }

  // --- charts: hand-drawn SVG ------------------------------------------------------------
  function chart(svg, series, format) {
    const W = 480, H = 180, L = 44, R = 8, T = 8, B = 20;
    const now = history.length ? history[history.length - 1].t : Date.now() / 1000;
    // The last five minutes, or less while there is less: at least one minute.
    const span = Math.min(WINDOW_S, Math.max(60, history.length ? now - history[0].t : 0));
    const x0 = now - span;
    let top = 0;
    for (const s of series) for (const v of s.values) if (v !== null && v > top) top = v;
    top = nice(top || 1);
    const x = (t) => L + ((t - x0) / span) * (W - L - R);
    const y = (v) => T + (1 - v / top) * (H - T - B);
    const ns = "http://www.w3.org/2000/svg";
    const make = (tag, attrs, text) => {
      const node = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      if (text !== undefined) node.textContent = text;
      return node;
    };
    const nodes = [];
    for (let i = 0; i <= 5; i++) {
      const v = (top * i) / 5;
      nodes.push(make("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      nodes.push(make("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" }, format(v)));
    }
    const step = [10, 15, 30, 60].find((st) => span / st <= 6) || 60;
    for (let ago = 0; ago <= span + 0.5; ago += step) {
      const label = ago === 0 ? "now" : ago % 60 ? `-${ago}s` : `-${ago / 60}m`;
      nodes.push(make("text", { x: x(now - ago), y: H - 6, "text-anchor": ago === 0 ? "end" : ago >= span ? "start" : "middle" }, label));
    }
    for (const s of series) {
      let d = "";
      let run = [];
      const flush = () => {
        if (run.length === 1) nodes.push(make("circle", { cx: run[0][0], cy: run[0][1], r: 2, fill: s.color }));
        run = [];
      };
      history.forEach((p, i) => {
        const v = s.values[i];
        if (v === null || v === undefined || p.t < x0) { flush(); return; }
        const px = x(p.t).toFixed(1), py = y(v).toFixed(1);
        d += `${run.length ? "L" : "M"}${px},${py}`;
        run.push([px, py]);
      });
      flush();
      if (d) nodes.push(make("path", { class: "series", d, stroke: s.color }));
    }
    svg.replaceChildren(...nodes);
    let legend = svg.nextElementSibling;
    if (!legend || !legend.classList.contains("legend")) {
      legend = el("div", { class: "legend" });
      svg.after(legend);
    }
    legend.replaceChildren(...series.map((s) => {
      const swatch = el("i");
      swatch.style.background = s.color;
      return el("span", {}, swatch, s.name);
    }));
  }

  const tick = (v) => String(+v.toFixed(2));

  function nice(v) {
    const step = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= v) return m * step;
    return 10 * step;
  }

  function drawCharts() {
    chart($("#chart-throughput"), [
      { name: "HTTP req/s", color: COLORS[0], values: history.map((p) => p.http_rps) },
      { name: "handled/s", color: COLORS[2], values: history.map((p) => p.handled) },
      { name: "failed/s", color: COLORS[1], values: history.map((p) => p.failed) },
    ], tick);
    chart($("#chart-latency"), [
      { name: "p50", color: COLORS[0], values: history.map((p) => (p.p50 === null ? null : p.p50 * 1000)) },
      { name: "p99", color: COLORS[3], values: history.map((p) => (p.p99 === null ? null : p.p99 * 1000)) },
    ], tick);
    const peak = {};
    for (const p of history) {
      for (const [name, q] of Object.entries(p.queues)) peak[name] = Math.max(peak[name] || 0, q[0] + q[1] + q[2]);
    }
    const busiest = Object.keys(peak).filter((n) => peak[n] > 0).sort((a, b) => peak[b] - peak[a]).slice(0, 6);
    chart($("#chart-depth"), busiest.map((name) => ({
      name, color: color(name),
      values: history.map((p) => (p.queues[name] ? p.queues[name][0] + p.queues[name][1] + p.queues[name][2] : null)),
    })), tick);
  }

  // --- tables ----------------------------------------------------------------------------
  function drawQueues() {
    const rows = state.queues.map((q) => el("tr", {
      "data-queue": q.name,
      class: [q.is_dead_letter_queue ? "dlq" : "", q.is_dead_letter_queue ? "clickable" : ""].join(" ").trim() || null,
      onclick: q.is_dead_letter_queue ? () => chooseDlq(q.name, true, true) : null,
    },
      el("td", { class: "mono name" }, q.name),
      el("td", { class: "mono" }, q.handler || "–"),
      el("td", { class: "num depth" + (q.depth > 0 ? " busy" : "") }, q.depth),
      el("td", { class: "num in-flight" }, q.in_flight),
      el("td", { class: "num delayed" }, q.delayed),
      el("td", { class: "num dead-letters" + (q.dead_letters > 0 ? " hot" : "") }, q.dead_letter_queue ? q.dead_letters : "–"),
      el("td", { class: "num rate-in" }, rate(q.rate_in)),
      el("td", { class: "num rate-out" }, rate(q.rate_out)),
    ));
    fill($("#queues tbody"), rows, "no queues", 8);
  }

  function drawRoutes() {
    const rows = [...state.routes].sort((a, b) => (a.version || "").localeCompare(b.version || ""))
      .map((r) => el("tr", { "data-route": `${r.method} ${r.path}` },
        el("td", {}, r.version || "–"), el("td", { class: "mono" }, r.method), el("td", { class: "mono" }, r.path),
        el("td", { class: "num" }, rate(r.rps)),
        el("td", { class: "num" + (r.error_rate ? " hot" : "") }, pct(r.error_rate)),
        el("td", { class: "num" }, ms(r.p50)), el("td", { class: "num" }, ms(r.p99)),
        el("td", { class: "num" }, r.requests)));
    fill($("#routes tbody"), rows, "no routes", 8);
  }

  function drawSockets() {
    const rows = (state.websockets || []).map((w) => el("tr", { "data-api": w.path },
      el("td", { class: "mono" }, w.path),
      el("td", { class: "mono" }, `${w.routes.join(", ")} (by ${w.route_selection})`),
      el("td", { class: "num open" }, w.open)));
    fill($("#websockets tbody"), rows, "no WebSocket APIs", 3);
  }

  function drawTopics() {
    const topics = state.topics.map((t) => el("div", { class: "topic", "data-topic": t.name },
      el("div", { class: "name mono" }, t.name, t.fifo ? " (FIFO)" : ""),
      t.subscriptions.length ? t.subscriptions.map((s) => el("div", { class: "sub" },
        el("span", { class: "mono" }, s.name), " → ", el("span", { class: "mono" }, s.queue || s.endpoint || "–"),
        s.handler ? el("span", { class: "muted" }, ` (${s.handler})`) : null,
        el("div", { class: "policy mono" }, s.filter_policy
          ? `filter (${s.filter_policy_scope}): ${JSON.stringify(s.filter_policy)}` : "no filter: every message"))) :
        el("div", { class: "sub empty" }, "no subscriptions")));
    $("#topics .body").replaceChildren(...(topics.length ? topics : [el("p", { class: "empty" }, "no topics")]));
  }

  function drawEmail() {
    fill($("#email tbody"), state.email.rules.map((r) => el("tr", {},
      el("td", { class: "mono" }, r.recipients.join(", ")), el("td", { class: "mono" }, r.queue),
      el("td", { class: "mono" }, r.handler || "–"))), "no @on_email rules", 3);
    const recent = state.email.recent.map((m) => el("li", {}, clock(m.time), " ",
      m.mail ? el("span", {}, el("b", {}, m.mail.subject || "(no subject)"), " from ",
        el("span", { class: "mono" }, m.mail.from || "?"), " to ",
        el("span", { class: "mono" }, m.mail.to || "?"), " · ") : null,
      el("span", { class: "mono" }, m.handler), " ", el("span", { class: "outcome-" + m.outcome }, m.outcome),
      m.error ? el("span", { class: "muted" }, " " + m.error) : null));
    $("#email .recent").replaceChildren(...(recent.length ? recent : [el("li", { class: "empty" }, "no mail handled yet")]));
  }

  function drawFailures() {
    fill($("#failures tbody"), state.failures.map((f) => el("tr", {},
      el("td", {}, clock(f.time)), el("td", { class: "mono" }, f.queue), el("td", { class: "mono" }, f.handler),
      el("td", { class: "outcome-" + f.outcome }, f.outcome), el("td", { class: "num" }, f.receive_count),
      el("td", { class: "mono" }, f.error || "–"))), "no failures", 6);
  }

  // --- dead letters ----------------------------------------------------------------------
  function dlqs() {
    return state.queues.filter((q) => q.is_dead_letter_queue);
  }

  function drawDlqSelect() {
    const select = $("#dlq-select");
    const options = dlqs().map((q) => el("option", { value: q.name, selected: q.name === dlq }, `${q.name} (${q.depth})`));
    select.replaceChildren(...options);
    const current = dlqs().find((q) => q.name === dlq);
    const fullest = dlqs().filter((q) => q.depth > 0).sort((a, b) => b.depth - a.depth)[0];
    if (!current || (!pinned && current.depth === 0 && fullest)) {
      // Until the user picks one, show the dead-letter queue that has the most messages.
      const pick = fullest || dlqs()[0];
      if (pick) chooseDlq(pick.name, false, false);
    } else if (current.depth !== dlqDepth) {
      peek();  // it changed: look again (each look counts as a receive, so only then)
    }
  }

  function chooseDlq(name, scroll, pin) {
    if (name !== dlq) lastAction = "";
    dlq = name;
    pinned = pinned || pin;
    selected.clear();
    $("#dlq-select").value = name;
    if (scroll) $("#dead-letters").scrollIntoView({ block: "nearest" });
    peek();
  }

  async function peek() {
    if (!dlq) return;
    const current = dlqs().find((q) => q.name === dlq);
    dlqDepth = current ? current.depth : null;
    const name = dlq;
    let data;
    try {
      data = await api("GET", `/queues/${encodeURIComponent(name)}/messages?limit=100`);
    } catch (error) {
      if (name !== dlq) return;  // another queue was chosen meanwhile: its own look decides
      // Never leave the previous queue's rows on screen under this queue's name.
      peeked = [];
      selected.clear();
      const why = error instanceof AuthError ? "admin token needed" : String(error.message);
      $("#dlq-note").textContent = `could not load ${name}: ${why}`;
      drawDeadLetters(`could not load ${name}`);
      return;
    }
    if (name !== dlq) return;  // an answer for a queue no longer shown
    peeked = data.messages;
    $("#dlq-note").textContent = (lastAction ? lastAction + ". " : "") +
      `${peeked.length} shown of ${dlqDepth ?? "?"} visible in ${name}. ` +
      "Each look is a receive and adds one to a message's receive count.";
    for (const id of [...selected]) if (!peeked.some((m) => m.message_id === id)) selected.delete(id);
    drawDeadLetters();
  }

  function drawDeadLetters(empty) {
    const rows = peeked.map((m) => {
      const r = m.dead_letter || {};
      const box = el("input", { type: "checkbox", checked: selected.has(m.message_id), "aria-label": "select" });
      box.addEventListener("change", () => { box.checked ? selected.add(m.message_id) : selected.delete(m.message_id); updateButtons(); });
      return el("tr", { "data-id": m.message_id, class: "dead-letter" },
        el("td", {}, box),
        el("td", { class: "mono" }, el("a", { href: "#", onclick: (e) => { e.preventDefault(); inspect(m); } }, m.message_id.slice(0, 12))),
        el("td", { class: "mono source" }, r.source_queue || "–"),
        el("td", { class: "reason" }, el("span", { class: "type" }, r.error_type || "–"), r.error_message ? ": " + r.error_message : ""),
        el("td", { class: "num" }, r.receive_count ?? m.receive_count),
        el("td", {}, when(r.time)),
        el("td", { class: "mono body-preview" }, m.body));
    });
    fill($("#dlq-messages"), rows, empty || (dlq ? "no dead letters" : "no dead-letter queues"), 7);
    $("#dlq-all").checked = peeked.length > 0 && selected.size === peeked.length;
    updateButtons();
  }

  function inspect(m) {
    const detail = $("#dlq-detail");
    let body = m.body;
    if (m.body_encoding === "text" && m.content_type === "application/json") {
      try { body = JSON.stringify(JSON.parse(m.body), null, 2); } catch (_) { /* shown as sent */ }
    }
    detail.textContent = [
      `message ${m.message_id}  (${m.content_type}, ${m.body_encoding}, received ${m.receive_count}×, sent ${when(m.sent_at)})`,
      `dead letter: ${JSON.stringify(m.dead_letter, null, 2)}`,
      `attributes: ${JSON.stringify(m.attributes, null, 2)}`,
      m.group_id ? `group: ${m.group_id}` : "",
      "body:", body,
    ].filter(Boolean).join("\n");
    detail.hidden = false;
  }

  function updateButtons() {
    $("#redrive-selected").disabled = $("#delete-selected").disabled = selected.size === 0;
    $("#redrive-all").disabled = $("#purge").disabled = !dlq;
  }

  async function act(title, text, method, path, body, report) {
    if (!dlq || !(await confirmAction(title, text))) return;
    try {
      const data = await api(method, path, body);
      lastAction = report(data);
      $("#dlq-note").textContent = lastAction;
      selected.clear();
      await poll();
      await peek();
    } catch (error) {
      if (!(error instanceof AuthError)) $("#dlq-note").textContent = "failed: " + error.message;
    }
  }

  const q = () => `/queues/${encodeURIComponent(dlq)}`;
  const notFound = (d) => (d.not_found && d.not_found.length ? ` (${d.not_found.length} not found)` : "");
  $("#redrive-selected").addEventListener("click", () => act("Redrive selected",
    `Move ${selected.size} message(s) from ${dlq} back to their source queue?`, "POST", q() + "/redrive",
    { message_ids: [...selected] }, (d) => `moved ${d.moved}${notFound(d)}`));
  $("#redrive-all").addEventListener("click", () => act("Redrive all",
    `Move every message in ${dlq} back to its source queue?`, "POST", q() + "/redrive", {}, (d) => `moved ${d.moved}`));
  $("#delete-selected").addEventListener("click", () => act("Delete selected",
    `Delete ${selected.size} message(s) from ${dlq} for good?`, "POST", q() + "/messages/delete",
    { message_ids: [...selected] }, (d) => `deleted ${d.deleted}${notFound(d)}`));
  $("#purge").addEventListener("click", () => act("Purge",
    `Delete every message in ${dlq} for good?`, "POST", q() + "/purge", undefined, (d) => `purged ${d.purged}`));
  $("#dlq-select").addEventListener("change", (e) => chooseDlq(e.target.value, false, true));
  $("#dlq-refresh").addEventListener("click", () => peek());
  $("#dlq-all").addEventListener("change", (e) => {
    selected.clear();
    if (e.target.checked) for (const m of peeked) selected.add(m.message_id);
    drawDeadLetters();
  });

  // --- polling ---------------------------------------------------------------------------
  let timer = null;
  async function poll() {
    clearTimeout(timer);
    try {
      if (waitingForToken) return;
      const data = await api("GET", "/dashboard/state" + (lastT === null ? "" : `?since=${lastT}`));
      state = data;
      history = history.concat(data.history).filter((p) => p.t > data.time - WINDOW_S);
      if (history.length) lastT = history[history.length - 1].t;
      $("#app-name").textContent = data.app;
      const status = $("#status");
      status.textContent = data.running ? "running" : "not running";
      status.className = "pill " + (data.running ? "ok" : "bad");
      $("#updated").textContent = "updated " + clock(data.time);
      drawQueues(); drawRoutes(); drawSockets(); drawTopics(); drawEmail(); drawFailures(); drawCharts(); drawDlqSelect();
    } catch (error) {
      if (!(error instanceof AuthError)) {
        $("#status").textContent = "unreachable";
        $("#status").className = "pill bad";
      }
    } finally {
      clearTimeout(timer);
      if (!waitingForToken) timer = setTimeout(poll, POLL_MS);
    }
  }

  // A link may carry the token in its fragment (#token=...): take it, then drop it from the URL.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, fragment.get("token"));
    window.history.replaceState(null, "", location.pathname + location.search);
  }
  updateButtons();
  poll();
})();
