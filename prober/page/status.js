// The prober's status page: the pods by dc, the findings, the maintenance
// entries and the Raft groups, loaded from the JSON API and kept live from
// GET /events (read with fetch() so that the token travels in the
// Authorization header, never in a URL). Plain JavaScript, no libraries.
"use strict";

(function () {
  const TOKEN_KEY = "prober.token";
  const REFRESH_DELAY = 150; // ms: events close together cost one reload
  // POLL_INTERVAL: lag and peer health change without an event; the pods
  // and the Raft view are reloaded this often as well.
  const POLL_INTERVAL = 3000;
  const state = { pods: [], config: null, raft: null, since: {}, lastId: "", retry: 2000 };
  let streamAbort = null;
  let tokenWaiters = [];
  let refreshTimer = null;
  const pending = new Set();

  const $ = (id) => document.getElementById(id);

  // el builds an element; text goes in as text, never as markup.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  function headers(extra) {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    const t = token();
    if (t) h.Authorization = "Bearer " + t;
    return h;
  }

  // api calls the API and returns {status, body}; a 401 asks for a token.
  async function api(method, path, body) {
    const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }), cache: "no-store" };
    if (body !== undefined) init.body = JSON.stringify(body);
    const resp = await fetch(path, init);
    let data = null;
    const text = await resp.text();
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: { message: text } }; }
    if (resp.status === 401) needToken(token() ? "The token was refused: paste another one." : "");
    return { status: resp.status, body: data };
  }

  function needToken(message) {
    $("token-form").hidden = false;
    $("auth-note").hidden = false;
    if (message) $("auth-note").textContent = message;
    setConn("down", "needs a token");
  }

  function showError(message) {
    $("error").hidden = !message;
    $("error").textContent = message || "";
  }

  function setConn(s, text) {
    $("conn").dataset.state = s;
    $("conn").textContent = text || { live: "live", connecting: "connecting…", down: "disconnected" }[s];
  }

  // loadAll reloads the whole state: on start, after a reset or dropped
  // event, and after an error of the stream.
  async function loadAll() {
    await refresh(["pods", "config", "raft"]);
  }

  const sources = {
    pods: async () => { const r = await api("GET", "/pods"); if (r.status === 200) state.pods = r.body.pods || []; return r; },
    config: async () => { const r = await api("GET", "/config"); if (r.status === 200) state.config = r.body; return r; },
    raft: async () => { const r = await api("GET", "/raft"); if (r.status === 200) state.raft = r.body; return r; },
  };

  async function refresh(kinds) {
    const results = await Promise.all(kinds.map((k) => sources[k]().catch((e) => ({ status: 0, body: { error: { message: String(e) } } }))));
    const failed = results.filter((r) => r.status !== 200 && r.status !== 401);
    showError(failed.length ? failed.map((r) => "HTTP " + (r.status || "error") + ": " + errMessage(r.body)).join("; ") : "");
    if (results.some((r) => r.status === 200)) {
      $("auth-note").hidden = true;
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    }
    render();
  }

  // scheduleRefresh reloads kinds soon, once for a burst of events.
  function scheduleRefresh(...kinds) {
    kinds.forEach((k) => pending.add(k));
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      const kinds = [...pending];
      pending.clear();
      refresh(kinds);
    }, REFRESH_DELAY);
  }

  function errMessage(body) {
    return (body && body.error && body.error.message) || "no answer";
  }

  // ---- the event stream -------------------------------------------------

  function onEvent(type, data) {
    switch (type) {
      case "phase": {
        const pv = state.pods.find((p) => p.pod === data.pod);
        if (pv) {
          if (pv.phase !== data.phase) state.since[data.pod] = { phase: data.phase, at: Date.now() };
          pv.phase = data.phase;
          pv.message = data.message;
          pv.inMaintenance = data.inMaintenance;
          pv.via = data.via;
          renderPods();
        }
        scheduleRefresh("pods", "config", "raft");
        break;
      }
      case "state":
        scheduleRefresh("pods", "config");
        break;
      case "finding":
        scheduleRefresh("raft");
        break;
      case "leader":
        scheduleRefresh("raft", "pods");
        break;
      case "reset":
      case "dropped":
        loadAll();
        break;
    }
  }

  function onFrame(frame) {
    let type = "message";
    const data = [];
    for (const line of frame.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? "" : line.slice(i + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") state.lastId = value;
      else if (field === "event") type = value;
      else if (field === "data") data.push(value);
      else if (field === "retry" && /^\d+$/.test(value)) state.retry = Number(value);
    }
    if (!data.length) return;
    let parsed;
    try { parsed = JSON.parse(data.join("\n")); } catch (e) { return; }
    onEvent(type, parsed);
  }

  // stream reads GET /events until it ends; it resolves on a clean end and
  // throws on an error.
  async function stream() {
    streamAbort = new AbortController();
    const h = headers({ Accept: "text/event-stream" });
    if (state.lastId) h["Last-Event-ID"] = state.lastId;
    const resp = await fetch("/events", { headers: h, cache: "no-store", signal: streamAbort.signal });
    if (resp.status === 401) {
      needToken(token() ? "The token was refused: paste another one." : "");
      await new Promise((resolve) => tokenWaiters.push(resolve));
      return;
    }
    if (!resp.ok) throw new Error("GET /events: HTTP " + resp.status);
    setConn("live");
    loadAll();
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf = (buf + value).replace(/\r\n?/g, "\n");
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        onFrame(buf.slice(0, i));
        buf = buf.slice(i + 2);
      }
    }
  }

  async function run() {
    for (;;) {
      setConn("connecting");
      try {
        await stream();
      } catch (e) {
        if (!(e && e.name === "AbortError")) {
          setConn("down");
          await loadAll();
        }
      }
      await new Promise((resolve) => setTimeout(resolve, streamAbort && streamAbort.signal.aborted ? 0 : state.retry));
    }
  }

  // ---- rendering --------------------------------------------------------

  function ago(t) {
    if (!t) return "—";
    let s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) return s + "s";
    const m = Math.floor(s / 60);
    s %= 60;
    if (m < 60) return m + "m " + s + "s";
    const h = Math.floor(m / 60);
    if (h < 48) return h + "h " + (m % 60) + "m";
    return Math.floor(h / 24) + "d " + (h % 24) + "h";
  }

  function until(t) {
    if (!t) return "never";
    const ms = Date.parse(t) - Date.now();
    return ms <= 0 ? "expired" : "in " + ago(Date.now() - ms);
  }

  // phaseSince is when pod entered its phase: the stored status's, else
  // when this page saw the phase change.
  function phaseSince(pv) {
    const st = state.config && state.config.status && state.config.status[pv.pod];
    if (st && st.phase === pv.phase && st.phaseSince) return Date.parse(st.phaseSince);
    const seen = state.since[pv.pod];
    if (seen && seen.phase === pv.phase) return seen.at;
    return null;
  }

  function render() {
    renderPods();
    renderFindings();
    renderEntries();
    renderGroups();
  }

  function renderPods() {
    const box = $("pods");
    if (!state.pods.length) { box.replaceChildren(el("p", { class: "muted" }, "No pods yet.")); return; }
    const byDC = new Map();
    for (const pv of state.pods) {
      if (!byDC.has(pv.dc)) byDC.set(pv.dc, []);
      byDC.get(pv.dc).push(pv);
    }
    const tables = [...byDC.keys()].sort().map((dc) => el("table", { class: "pods" },
      el("caption", {}, "dc " + dc),
      el("thead", {}, el("tr", {}, ["pod", "phase", "mode", "leads", "lag", "in phase for", "maintenance", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, byDC.get(dc).map(podRow))));
    box.replaceChildren(...tables);
  }

  function podRow(pv) {
    const raft = pv.raft || {};
    const leads = raft.leads || [];
    let lag = String(raft.lag || 0);
    if (raft.reachable === false) lag = "unreachable";
    else if (!raft.current) lag += " (not current)";
    const since = phaseSince(pv);
    const entry = pv.inMaintenance ? [pv.via === "dc" ? "dc entry" : "pod entry", pv.reason ? ": " + pv.reason : ""].join("") : "";
    return el("tr", { id: "pod-" + pv.pod, "data-pod": pv.pod },
      el("td", { class: "pod" }, pv.pod),
      el("td", { class: "phase phase-" + pv.phase, title: pv.message || "" }, pv.phase, pv.message ? el("div", { class: "muted" }, pv.message) : null),
      el("td", {}, pv.mode || "—"),
      el("td", { title: leads.join(", ") }, leads.length ? leads.length + ": " + leads.join(", ") : "0"),
      el("td", { class: raft.reachable === false || !raft.current ? "warn" : "" }, lag),
      el("td", { class: "since", "data-since": since || "" }, ago(since)),
      el("td", {}, entry),
      el("td", { class: "actions" },
        el("button", { type: "button", "data-action": "on", "data-pod": pv.pod, title: "PUT /pods/" + pv.pod }, "maintenance on"),
        el("button", { type: "button", "data-action": "off", "data-pod": pv.pod, title: "DELETE /pods/" + pv.pod }, "off"),
        el("button", { type: "button", "data-action": "dry", "data-pod": pv.pod, title: "PUT /pods/" + pv.pod + "?dryRun=true" }, "dry run")));
  }

  function renderFindings() {
    const box = $("findings");
    const fs = (state.raft && state.raft.findings) || [];
    if (!state.raft) { box.replaceChildren(el("p", { class: "muted" }, "No cluster view yet.")); return; }
    if (!fs.length) { box.replaceChildren(el("p", { class: "ok" }, "No findings: the cluster is healthy.")); return; }
    box.replaceChildren(...fs.map((f) => el("div", { class: "finding " + f.severity, "data-cause": f.cause },
      el("div", {}, el("span", { class: { critical: "bad", warning: "warn" }[f.severity] || "muted" }, f.severity), " ", el("strong", {}, f.cause), " — ", f.summary),
      (f.nodes || []).length ? el("div", { class: "muted" }, "nodes: " + f.nodes.join(", ")) : null,
      (f.evidence || []).length ? el("ul", {}, f.evidence.map((e) => el("li", {}, e))) : null,
      (f.remedy || []).length ? el("div", {}, "Remedy:", el("ol", {}, f.remedy.map((r) => el("li", {}, r)))) : null)));
  }

  function renderEntries() {
    const box = $("entries");
    const c = state.config;
    if (!c) { box.replaceChildren(); return; }
    const rows = [];
    for (const [kind, m] of [["pod", c.pods || {}], ["dc", c.dcs || {}]]) {
      for (const name of Object.keys(m).sort()) rows.push([kind, name, m[name]]);
    }
    if (!rows.length) { box.replaceChildren(el("p", { class: "muted" }, "Nothing is in maintenance.")); return; }
    box.replaceChildren(el("table", {},
      el("thead", {}, el("tr", {}, ["entry", "mode", "reason", "requested by", "since", "expires"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map(([kind, name, e]) => el("tr", { id: "entry-" + kind + "-" + name },
        el("td", {}, kind + " " + name, e.force ? el("span", { class: "bad" }, " (forced)") : null),
        el("td", {}, e.mode || "fence"),
        el("td", {}, e.reason || "—"),
        el("td", {}, e.requestedBy || "—"),
        el("td", { title: e.since || "" }, e.since ? ago(Date.parse(e.since)) + " ago" : "—"),
        el("td", { title: e.expiresAt || "" }, until(e.expiresAt)))))));
  }

  // groupHealth ranks a group: 0 no leader or no quorum, 1 degraded, 2 fine.
  function groupHealth(g) {
    const peers = g.peers || [];
    const healthy = peers.filter((p) => p.healthy).length;
    if (!g.leader || g.quorumLostSince || g.leaderlessSince) return { rank: 0, text: g.leader ? "quorum lost" : "no leader", healthy };
    if (healthy < peers.length) return { rank: 1, text: healthy + "/" + peers.length + " healthy", healthy };
    return { rank: 2, text: "healthy", healthy };
  }

  function renderGroups() {
    const box = $("groups");
    const gs = ((state.raft && state.raft.groups) || []).map((g) => ({ g, h: groupHealth(g) }));
    if (!gs.length) { box.replaceChildren(el("p", { class: "muted" }, "No Raft groups yet.")); return; }
    gs.sort((a, b) => a.h.rank - b.h.rank || a.g.name.localeCompare(b.g.name));
    box.replaceChildren(el("table", {},
      el("thead", {}, el("tr", {}, ["group", "kind", "health", "leader", "term", "peers"].map((h) => el("th", {}, h)))),
      el("tbody", {}, gs.map(({ g, h }) => el("tr", { "data-group": g.name },
        el("td", {}, (g.account ? g.account + " " : "") + g.name),
        el("td", {}, g.kind),
        el("td", { class: ["bad", "warn", "ok"][h.rank] }, h.text),
        el("td", {}, g.leader || "—"),
        el("td", {}, g.term || ""),
        el("td", {}, (g.peers || []).map((p) => el("span", { class: p.healthy ? "" : "bad", title: p.lag ? "lag " + p.lag : "" },
          p.name + (p.leader ? "★" : "") + (p.healthy ? "" : " ✗") + " "))))))));
  }

  function tick() {
    for (const td of document.querySelectorAll("td.since")) {
      const t = Number(td.dataset.since);
      td.textContent = ago(t || null);
    }
  }

  // ---- actions ----------------------------------------------------------

  function dialog(title, body, force) {
    $("dialog-title").textContent = title;
    $("dialog-body").replaceChildren(...body);
    $("force").hidden = !force;
    $("force-button").hidden = !force;
    $("force-reason").value = "";
    $("force-button").disabled = true;
    $("force-button").onclick = force ? async () => {
      const reason = $("force-reason").value.trim();
      if (!reason) return;
      $("dialog").close();
      await force(reason).catch((e) => dialog("Request failed", [el("p", {}, String(e))]));
    } : null;
    if (!$("dialog").open) $("dialog").showModal();
  }

  function violations(list) {
    return el("ul", { class: "violations" }, (list || []).map((v) => el("li", { "data-group": v.group },
      el("strong", {}, v.group), " (" + v.kind + "): ", v.reason)));
  }

  async function change(method, pod, dryRun, body) {
    const path = "/pods/" + encodeURIComponent(pod) + (dryRun ? "?dryRun=true" : "");
    const r = await api(method, path, body);
    const what = method + " " + path;
    if (dryRun && r.status === 200) {
      const v = r.body || {};
      if (v.safe) dialog("Dry run " + pod + ": safe", [el("p", { class: "ok" }, "No Raft group would lose its quorum." + (v.changed ? "" : " (Nothing would change.)"))]);
      else dialog("Dry run " + pod + ": unsafe", [el("p", { class: "bad" }, "These Raft groups would lose their quorum:"), violations(v.violations)]);
      return;
    }
    if (r.status === 409) {
      const e = (r.body && r.body.error) || {};
      dialog(what + " refused (409)", [el("p", {}, e.message || "unsafe"), violations(e.details)],
        method === "PUT" ? (reason) => change("PUT", pod, false, { reason, force: true }) : null);
      return;
    }
    if (r.status >= 400 || r.status === 0) {
      if (r.status !== 401) dialog(what + ": HTTP " + r.status, [el("p", {}, errMessage(r.body))]);
      return;
    }
    $("action").textContent = what + ": " + r.status + (r.body && r.body.phase ? " (" + r.body.phase + ")" : "");
    scheduleRefresh("pods", "config");
  }

  function onClick(ev) {
    const b = ev.target.closest("button[data-action]");
    if (!b) return;
    const pod = b.dataset.pod;
    const reason = $("reason").value.trim();
    let done;
    switch (b.dataset.action) {
      case "on": done = change("PUT", pod, false, reason ? { reason } : {}); break;
      case "off": done = change("DELETE", pod, false); break;
      case "dry": done = change("PUT", pod, true, reason ? { reason } : {}); break;
      default: return;
    }
    done.catch((e) => dialog("Request failed", [el("p", {}, String(e))]));
  }

  function start() {
    $("pods").addEventListener("click", onClick);
    $("force-reason").addEventListener("input", () => { $("force-button").disabled = !$("force-reason").value.trim(); });
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = $("token").value.trim();
      $("token").value = "";
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      $("auth-note").hidden = true;
      const waiters = tokenWaiters;
      tokenWaiters = [];
      waiters.forEach((w) => w());
      if (streamAbort) streamAbort.abort();
    });
    $("token-clear").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); needToken(""); if (streamAbort) streamAbort.abort(); });
    if (token()) $("token-form").hidden = false;
    setInterval(tick, 1000);
    setInterval(() => { if (!document.hidden && $("conn").dataset.state === "live") scheduleRefresh("pods", "raft"); }, POLL_INTERVAL);
    run();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
