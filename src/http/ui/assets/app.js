// The blobq dashboard: polls the server's JSON routes, keeps a few minutes
// of samples in the page, and redraws. No framework, no build step.
"use strict";
(() => {
  const POLL_MS = 2000;
  const HIDDEN_POLL_MS = 10000;
  // Namespaces whose queues and jobs are fetched at each refresh. Pages
  // are the server's default size, which never exceeds its
  // --max-page-size.
  const NAMESPACES_SHOWN = 50;
  const SPARK_POINTS = 60;
  // Job queues whose running and failed jobs are listed.
  const JOB_QUEUES_LISTED = 20;
  const MAX_SAMPLES = 2000;
  // The charts span the samples held, rounded up to one of these.
  const WINDOWS_MS = [0.5, 1, 2, 4, 10].map((m) => m * 60 * 1000);
  // Samples closer than this replace each other: a rate over a sliver of
  // time is noise.
  const MIN_SAMPLE_GAP_MS = 500;
  const TOKEN_KEY = "blobq.token";
  const SVG = "http://www.w3.org/2000/svg";
  const STATES = ["pending", "running", "succeeded", "failed", "cancelled"];
  const $ = (id) => document.getElementById(id);

  // ---- formatting ----
  const nf = new Intl.NumberFormat();
  const count = (n) => (n == null ? "—" : nf.format(n));
  function bytes(n) {
    if (n == null) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    const text = i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0);
    return text + " " + units[i];
  }
  function rate(r) {
    if (r == null) return "—";
    if (r === 0) return "0/s";
    if (r < 0.1) return "<0.1/s";
    return (r < 10 ? r.toFixed(1) : nf.format(Math.round(r))) + "/s";
  }
  function short(n) {
    if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + "M";
    if (n >= 1e3) return (n / 1e3).toFixed(n >= 1e4 ? 0 : 1) + "k";
    return String(Math.round(n * 10) / 10);
  }
  function shortBytes(n) { return bytes(n).replace(".00 ", " ").replace(" ", ""); }
  function duration(s) {
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s % 60}s`;
    return `${s}s`;
  }
  function ago(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return "";
    return duration(Math.max(0, Math.round((Date.now() - t) / 1000))) + " ago";
  }
  const path = (...names) => names.map(encodeURIComponent).join("/");

  // ---- DOM helpers (text only: nothing from the server becomes markup) ----
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children) if (c != null) node.append(c);
    return node;
  }

  // ---- the API, with the tab's token ----
  class Unauthorised extends Error {}
  async function problem(r) {
    try { const p = await r.json(); return p.detail || p.title || r.statusText; } catch { return r.statusText; }
  }
  async function api(url) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const r = await fetch(url, { headers, cache: "no-store" });
    if (r.status === 401) throw new Unauthorised(await problem(r));
    return r;
  }
  async function json(url) {
    const r = await api(url);
    if (!r.ok) throw new Error(`${url}: ${r.status} ${await problem(r)}`);
    return r.json();
  }

  // ---- what the page remembers between refreshes ----
  const state = {
    samples: [], // {t, pushes, pops, elements, leased, memory, disk}, cumulative counters
    queues: new Map(), // "ns/q" -> {t, pushed, popped, push, pop, depth: []}
    historyTried: false,
    jobsServed: true,
    failures: new Map(), // "ns/q" -> {failed, jobs}
  };

  function addSample(sample) {
    const last = state.samples[state.samples.length - 1];
    if (last && sample.t <= last.t) return;
    if (last && state.samples.length > 1 && sample.t - last.t < MIN_SAMPLE_GAP_MS) state.samples.pop();
    state.samples.push(sample);
    if (state.samples.length > MAX_SAMPLES) state.samples.splice(0, state.samples.length - MAX_SAMPLES);
  }

  async function loadHistory() {
    state.historyTried = true;
    const r = await api("/ui/history");
    if (!r.ok) return; // 403: this credential may not see server-wide totals
    const doc = await r.json();
    const offset = Date.now() - doc.now;
    for (const s of doc.samples) {
      addSample({
        t: s.t + offset, pushes: s.pushes, pops: s.pops, elements: s.elements,
        leased: s.leased, memory: s.memory_bytes, disk: s.disk_bytes,
      });
    }
  }

  /// Rates per second between successive samples, counters reset clamped.
  function rates(key) {
    const out = [];
    const s = state.samples;
    for (let i = 1; i < s.length; i++) {
      const dt = (s[i].t - s[i - 1].t) / 1000;
      if (dt <= 0 || s[i][key] == null || s[i - 1][key] == null) continue;
      out.push([s[i].t, Math.max(0, s[i][key] - s[i - 1][key]) / dt]);
    }
    return out;
  }
  const gauge = (key) => state.samples.filter((s) => s[key] != null).map((s) => [s.t, s[key]]);

  // ---- one refresh ----
  async function refresh() {
    if (!state.historyTried) await loadHistory();
    const server = await json("/qs");
    const shown = server.namespaces.slice(0, NAMESPACES_SHOWN);
    const namespaces = await Promise.all(shown.map(async (n) => {
      const r = await api(`/qs/${path(n.namespace)}`);
      return r.ok ? r.json() : { ...n, queues: [], hidden: r.status };
    }));
    const now = Date.now();
    const totals = totalsOf(server);
    addSample({ t: now, ...totals });
    renderServer(server);
    renderCards(totals, namespaces);
    renderCharts();
    remember(namespaces, now);
    state.last = { server, namespaces };
    renderQueues();
    if (state.jobsServed) await refreshJobs(shown.map((n) => n.namespace));
  }

  /// Server-wide figures: the server's own with an admin credential (or
  /// none needed), else the sum of the namespaces this credential sees.
  function totalsOf(server) {
    if (server.pushes !== undefined) {
      return {
        pushes: server.pushes, pops: server.pops, elements: server.elements, leased: server.leased,
        waiting: server.waiting, memory: server.memory_bytes, disk: server.disk_bytes,
        expirations: server.expirations,
      };
    }
    const sum = { pushes: 0, pops: 0, elements: 0, leased: 0, waiting: 0, memory: null, disk: null, expirations: 0 };
    for (const n of server.namespaces) {
      sum.pushes += n.pushed; sum.pops += n.popped; sum.elements += n.elements;
      sum.leased += n.leased; sum.waiting += n.waiting; sum.expirations += n.expired;
    }
    return sum;
  }

  function renderServer(server) {
    $("server").textContent = `v${server.version} · up ${duration(server.uptime_seconds)} · ` +
      `${count(server.namespace_count)} namespace${server.namespace_count === 1 ? "" : "s"}`;
  }

  function lastRate(key) {
    const r = rates(key);
    return r.length ? r[r.length - 1][1] : null;
  }

  function renderCards(t, namespaces) {
    let dead = 0;
    for (const ns of namespaces) for (const q of ns.queues) if (q.queue.endsWith(".dead")) dead += q.elements;
    const cards = [
      ["Ready", count(t.elements), "elements in queues", "elements"],
      ["Leased", count(t.leased), "out with consumers", "leased"],
      ["Waiting", count(t.waiting), "consumers in a pop", "waiting"],
      ["Push rate", rate(lastRate("pushes")), `${count(t.pushes)} since start`, "push-rate"],
      ["Pop rate", rate(lastRate("pops")), `${count(t.pops)} since start`, "pop-rate"],
      ["Memory", bytes(t.memory), "blob bytes in memory", "memory"],
      ["Disk", bytes(t.disk), "blob bytes in files", "disk"],
      ["Dead letters", count(dead), "in *.dead queues", "dead"],
    ];
    const box = $("cards");
    box.replaceChildren(...cards.map(([label, value, sub, key]) => el("div",
      { class: "card" + (key === "dead" && dead > 0 ? " alert" : ""), "data-card": key },
      el("div", { class: "label" }, label),
      el("div", { class: "value" }, value),
      el("div", { class: "sub" }, sub))));
    const deadCard = box.querySelector("[data-card=dead] .value");
    if (dead > 0) deadCard.classList.add("bad");
  }

  // ---- charts: inline SVG ----
  function niceMax(v, binary) {
    if (!(v > 0)) return 1;
    if (binary && v >= 1024) {
      const unit = Math.pow(1024, Math.floor(Math.log(v) / Math.log(1024)));
      return niceMax(v / unit) * unit;
    }
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }
  function chart(id, series, format, binary) {
    const plot = document.querySelector(`#${id} .plot`);
    const w = Math.max(200, plot.clientWidth), h = plot.clientHeight || 130;
    const left = 44, right = 6, top = 18, bottom = 16;
    const now = Date.now();
    const span = state.samples.length ? now - state.samples[0].t : 0;
    const windowMs = WINDOWS_MS.find((m) => m >= span) ?? WINDOWS_MS[WINDOWS_MS.length - 1];
    const from = now - windowMs;
    const x = (t) => left + ((t - from) / windowMs) * (w - left - right);
    const points = series.map((s) => ({ ...s, pts: s.pts.filter(([t]) => t >= from) }));
    const max = niceMax(Math.max(0, ...points.flatMap((s) => s.pts.map(([, v]) => v))), binary);
    const y = (v) => top + (1 - v / max) * (h - top - bottom);
    const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": id });
    for (const f of [0, 0.5, 1]) {
      root.append(svg("line", { class: "gridline", x1: left, x2: w - right, y1: y(max * f), y2: y(max * f) }));
      root.append(svg("text", { class: "axis", x: left - 6, y: y(max * f) + 3, "text-anchor": "end" }, format(max * f)));
    }
    const ago = (ms) => (ms >= 60000 ? `-${ms / 60000}m` : `-${ms / 1000}s`);
    for (const [label, t, anchor] of [[ago(windowMs), from, "start"], [ago(windowMs / 2), from + windowMs / 2, "middle"], ["now", now, "end"]]) {
      root.append(svg("text", { class: "axis", x: x(t), y: h - 2, "text-anchor": anchor }, label));
    }
    let legendX = left;
    points.forEach((s, i) => {
      if (s.pts.length > 1) {
        const line = s.pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
        const first = s.pts[0][0], last = s.pts[s.pts.length - 1][0];
        root.append(svg("polygon", { class: `area series-${i}`, points: `${x(first)},${y(0)} ${line} ${x(last)},${y(0)}` }));
        root.append(svg("polyline", { class: `line series-${i}`, points: line }));
      }
      const current = s.pts.length ? format(s.pts[s.pts.length - 1][1]) : "—";
      root.append(svg("rect", { class: `series-${i}`, x: legendX, y: 3, width: 9, height: 9, rx: 2 }));
      const text = svg("text", { class: "axis legend-text", x: legendX + 13, y: 11 }, `${s.name} ${current}`);
      root.append(text);
      legendX += 24 + (s.name.length + current.length) * 6.5;
    });
    if (points.every((s) => s.pts.length < 2)) {
      root.append(svg("text", { class: "waiting", x: (left + w) / 2, y: h / 2, "text-anchor": "middle" }, "collecting samples…"));
    }
    plot.replaceChildren(root);
  }
  function renderCharts() {
    const perSecond = (v) => short(v) + "/s";
    chart("chart-rates", [{ name: "push", pts: rates("pushes") }, { name: "pop", pts: rates("pops") }], perSecond);
    chart("chart-depth", [{ name: "ready", pts: gauge("elements") }, { name: "leased", pts: gauge("leased") }], short);
    chart("chart-bytes", [{ name: "memory", pts: gauge("memory") }, { name: "disk", pts: gauge("disk") }], shortBytes, true);
  }
  function spark(values) {
    const w = 130, h = 24;
    const root = svg("svg", { class: "spark", viewBox: `0 0 ${w} ${h}`, "aria-hidden": "true" });
    root.append(svg("line", { class: "base", x1: 0, x2: w, y1: h - 1.5, y2: h - 1.5 }));
    if (values.length < 2) return root;
    const max = Math.max(1, ...values);
    // The points held fill the width: a queue seen for a few seconds has
    // a few points, one seen for minutes SPARK_POINTS.
    const step = w / (values.length - 1);
    const start = 0;
    const pts = values.map((v, i) => `${(start + i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 8)).toFixed(1)}`).join(" ");
    root.append(svg("polygon", { points: `${start},${h} ${pts} ${w},${h}` }), svg("polyline", { points: pts }));
    return root;
  }

  // ---- the queues table ----
  function numCell(field, value, text) {
    return el("td", { class: "num" + (value === 0 ? " zero" : ""), "data-field": field }, text ?? count(value));
  }
  /// Per-queue rates from this refresh and the one before, and the depth
  /// history of the sparklines.
  function remember(namespaces, now) {
    const seen = new Set();
    const note = (key, figures) => {
      seen.add(key);
      const mem = state.queues.get(key) || { depth: [] };
      if (mem.t != null && now > mem.t) {
        const dt = (now - mem.t) / 1000;
        mem.push = Math.max(0, figures.pushed - mem.pushed) / dt;
        mem.pop = Math.max(0, figures.popped - mem.popped) / dt;
      }
      Object.assign(mem, { t: now, pushed: figures.pushed, popped: figures.popped });
      mem.depth.push(figures.elements);
      if (mem.depth.length > SPARK_POINTS) mem.depth.shift();
      state.queues.set(key, mem);
    };
    for (const ns of namespaces) {
      note(ns.namespace, ns);
      for (const q of ns.queues) note(`${ns.namespace}/${q.queue}`, q);
    }
    for (const key of state.queues.keys()) if (!seen.has(key)) state.queues.delete(key);
  }
  function renderQueues() {
    if (!state.last) return;
    const { server, namespaces } = state.last;
    const filter = $("filter").value.trim().toLowerCase();
    const rows = [];
    let shown = 0;
    for (const ns of namespaces) {
      const queues = ns.queues.filter((q) => !filter || `${ns.namespace}/${q.queue}`.toLowerCase().includes(filter));
      if (filter && !queues.length) continue;
      const meta = ns.hidden
        ? `not observable with this credential (${ns.hidden})`
        : `${count(ns.queue_count)} queue${ns.queue_count === 1 ? "" : "s"} · ${count(ns.blobs)} blob${ns.blobs === 1 ? "" : "s"} · ${bytes(ns.blob_bytes)}`;
      const nsMem = state.queues.get(ns.namespace) || {};
      rows.push(el("tr", { class: "ns", "data-namespace": ns.namespace },
        el("td", { class: "name" }, ns.namespace, el("span", { class: "meta" }, meta)),
        numCell("elements", ns.elements), numCell("leased", ns.leased), numCell("waiting", ns.waiting),
        numCell("bytes", ns.bytes, bytes(ns.bytes)),
        numCell("push-rate", nsMem.push, rate(nsMem.push)), numCell("pop-rate", nsMem.pop, rate(nsMem.pop)),
        numCell("expired", ns.expired), el("td")));
      for (const q of queues) {
        const key = `${ns.namespace}/${q.queue}`;
        const mem = state.queues.get(key) || { depth: [] };
        const dead = q.queue.endsWith(".dead");
        const cls = "queue" + (dead ? " dead" : "") + (dead && q.elements > 0 ? " has-letters" : "");
        rows.push(el("tr", { class: cls, "data-queue": key },
          el("td", { class: "name" }, q.queue, dead ? el("span", { class: "badge" }, "dead letters") : null),
          numCell("elements", q.elements), numCell("leased", q.leased), numCell("waiting", q.waiting),
          numCell("bytes", q.bytes, bytes(q.bytes)),
          numCell("push-rate", mem.push, rate(mem.push)), numCell("pop-rate", mem.pop, rate(mem.pop)),
          numCell("expired", q.expired), el("td", { class: "spark-col" }, spark(mem.depth))));
        shown++;
      }
    }
    $("queue-rows").replaceChildren(...rows);
    $("queues-empty").hidden = shown > 0 || !!filter;
    const notes = [];
    if (namespaces.length < server.namespace_count) notes.push(`Showing the first ${namespaces.length} of ${count(server.namespace_count)} namespaces.`);
    for (const ns of namespaces) if (ns.next_page_token) notes.push(`${ns.namespace}: the first ${ns.queues.length} of ${count(ns.queue_count)} queues.`);
    $("queues-note").textContent = notes.join(" ");
    $("queues-note").hidden = !notes.length;
  }

  // ---- jobs ----
  async function refreshJobs(namespaces) {
    const docs = [];
    const answers = await Promise.all(namespaces.map((ns) => api(`/jobs/${path(ns)}`)));
    for (const r of answers) {
      if (r.status === 501) { state.jobsServed = false; break; }
      if (r.ok) docs.push(await r.json());
    }
    if (!state.jobsServed) {
      $("job-rows").replaceChildren();
      $("jobs-empty").textContent = "This server does not serve jobs (durable mode keeps no jobs).";
      $("jobs-empty").hidden = false;
      return;
    }
    const queues = [];
    for (const doc of docs) for (const [queue, c] of Object.entries(doc.queues)) queues.push({ ns: doc.namespace, queue, c });
    $("job-rows").replaceChildren(...queues.map(({ ns, queue, c }) => {
      const bar = el("div", { class: "states", title: STATES.map((s) => `${s} ${c[s]}`).join(", ") });
      for (const s of STATES) {
        if (!c[s]) continue;
        const part = el("span", { class: `s-${s}` });
        part.style.width = `${(100 * c[s]) / Math.max(1, c.total)}%`;
        bar.append(part);
      }
      return el("tr", { class: "job-queue", "data-jobs": `${ns}/${queue}` },
        el("td", { class: "name" }, `${ns}/${queue}`),
        ...STATES.map((s) => numCell(s, c[s])), numCell("waiting_workers", c.waiting_workers),
        el("td", { class: "states-col" }, bar));
    }));
    $("jobs-empty").hidden = queues.length > 0;

    const running = [];
    const failures = [];
    let listed = 0;
    for (const { ns, queue, c } of queues) {
      const key = `${ns}/${queue}`;
      // A few listings per refresh, however many job queues there are.
      if (++listed > JOB_QUEUES_LISTED) break;
      if (c.running > 0) {
        const page = await json(`/jobs/${path(ns, queue)}?state=running&limit=20`);
        running.push(...page.jobs);
      }
      const known = state.failures.get(key);
      if (c.failed > 0 && (!known || known.failed !== c.failed)) {
        const page = await json(`/jobs/${path(ns, queue)}?state=failed&limit=100`);
        state.failures.set(key, { failed: c.failed, jobs: page.jobs });
      } else if (c.failed === 0) {
        state.failures.delete(key);
      }
      const kept = state.failures.get(key);
      if (kept) failures.push(...kept.jobs);
    }
    renderRunning(running);
    failures.sort((a, b) => (b.finished || "").localeCompare(a.finished || ""));
    renderFailures(failures.slice(0, 8));
  }
  function renderRunning(jobs) {
    $("running").replaceChildren(...jobs.slice(0, 12).map((j) => {
      const bar = el("span");
      bar.style.width = `${j.progress ?? 0}%`;
      return el("li", { "data-job": j.id },
        el("div", { class: "what" }, `${j.namespace}/${j.queue} · ${j.id.slice(0, 8)} · attempt ${j.attempt}/${j.max_attempts}`),
        el("div", { class: "pct" }, j.progress == null ? "—" : `${j.progress}%`),
        el("div", { class: "progress" }, bar),
        j.message ? el("div", { class: "msg" }, j.message) : null);
    }));
    $("running-empty").hidden = jobs.length > 0;
  }
  function renderFailures(jobs) {
    $("failures").replaceChildren(...jobs.map((j) => el("li", { "data-job": j.id },
      el("span", { class: "when" }, ago(j.finished)),
      el("span", { class: "code" }, j.error?.code ?? "FAILED"),
      el("span", { class: "what" }, `  ${j.namespace}/${j.queue} · ${j.id.slice(0, 8)}`),
      el("div", { class: "err" }, j.error?.message || "(no message)"))));
    $("failures-empty").hidden = jobs.length > 0;
  }
  function renderLegend() {
    $("jobs-legend").replaceChildren(...STATES.map((s) => el("span", {}, el("i", { class: `s-${s}` }), s)));
  }

  // ---- status, token, the loop ----
  function setStatus(live, text) {
    const status = $("status");
    status.classList.toggle("live", live);
    status.classList.toggle("down", !live);
    $("status-text").textContent = text;
  }
  function askForToken(reason) {
    const hadToken = !!sessionStorage.getItem(TOKEN_KEY);
    $("login-reason").textContent = hadToken
      ? `The server refused the token: ${reason}. Paste another one.`
      : "This server requires a credential. Paste a token (or a JWT) with the observer role; it is kept in this tab only.";
    $("login-reason").classList.toggle("error", hadToken);
    $("login").hidden = false;
    $("token").focus();
    setStatus(false, "token required");
  }

  // One refresh at a time: a refresh asked for while one runs follows it.
  let timer = null, busy = false, again = false;
  async function tick() {
    if (busy) { again = true; return; }
    busy = true;
    timer = null;
    let refused = false;
    try {
      await refresh();
      setStatus(true, "live · " + new Date().toLocaleTimeString());
    } catch (e) {
      if (e instanceof Unauthorised) { refused = true; state.historyTried = false; askForToken(e.message); }
      else setStatus(false, "unreachable: " + (e.message || e));
    } finally {
      busy = false;
    }
    if (refused) return;
    if (again) { again = false; tick(); return; }
    timer = setTimeout(tick, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
  }
  function restart() {
    if (timer) { clearTimeout(timer); timer = null; }
    tick();
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("login").hidden = true;
    $("forget-token").hidden = false;
    restart();
  });
  $("forget-token").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); location.reload(); });
  $("filter").addEventListener("input", renderQueues);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) restart(); });
  window.addEventListener("resize", renderCharts);
  $("forget-token").hidden = !sessionStorage.getItem(TOKEN_KEY);
  renderLegend();
  tick();
})();
