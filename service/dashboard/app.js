// The operators' dashboard: polls /stats every 2 s and draws what it says.
//
// Tokens (the stats token, the admin token) live in sessionStorage only: never in the URL,
// never sent anywhere but this service's own /stats and /admin/cache/warm.
"use strict";

(function () {
  const POLL_MS = 2000;
  const HISTORY_POINTS = 180; // 6 minutes at one point per poll
  const RATE_WINDOW_SECONDS = 10; // rates derived from totals, when /stats has no "rates"
  const STATS_TOKEN_KEY = "content-service.stats-token";
  const ADMIN_TOKEN_KEY = "content-service.admin-token";
  const STATES = ["hit", "miss", "stale", "bypass"];
  const TOTAL_OF_STATE = { hit: "hits", miss: "misses", stale: "stale", bypass: "bypass" };
  const PALETTE = ["#2f6fdd", "#e8590c", "#2b8a3e", "#9c36b5", "#c92a2a", "#0b7285",
    "#5f3dc4", "#a61e4d", "#5c940d", "#862e9c", "#495057"];
  const STATE_COLOURS = { hit: "#2b8a3e", miss: "#e8590c", stale: "#b7791f", bypass: "#c92a2a" };

  const $ = (id) => document.getElementById(id);

  // ---- numbers for people ---------------------------------------------------------------
  const intFormat = new Intl.NumberFormat("en-US");
  function count(n) { return n === null || n === undefined ? "–" : intFormat.format(n); }
  function percent(ratio) {
    if (ratio === null || ratio === undefined || Number.isNaN(ratio)) return "–";
    return (ratio * 100).toFixed(ratio >= 0.9995 || ratio === 0 ? 0 : 1) + " %";
  }
  function perSecond(rate) {
    if (rate === null || rate === undefined || Number.isNaN(rate)) return "–";
    if (rate === 0) return "0";
    if (rate < 10) return rate.toFixed(1);
    return intFormat.format(Math.round(rate));
  }
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 60) return seconds.toFixed(seconds < 10 ? 1 : 0) + " s";
    const m = Math.floor(seconds / 60);
    if (m < 60) return m + " min " + Math.round(seconds % 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  function setText(id, text) { $(id).textContent = text; }
  function setBadge(id, value) {
    const el = $(id);
    el.textContent = value ? value.replace("_", " ") : "–";
    el.className = "badge " + (value || "");
  }

  // ---- history and rates ----------------------------------------------------------------
  const samples = []; // {t (s since epoch), totals: {hits, misses, stale, bypass}}
  const history = { t: [], ratio: {}, overall: [], rates: { total: [], hit: [], miss: [], stale: [], bypass: [] } };

  function pushBounded(list, value) {
    list.push(value);
    if (list.length > HISTORY_POINTS) list.shift();
  }

  // Rates from successive totals over about RATE_WINDOW_SECONDS; totals that went down (a
  // purge of "all" resets them) start the window again.
  function derivedRates(t, cache) {
    const totals = {};
    for (const name of Object.values(TOTAL_OF_STATE)) totals[name] = cache[name] || 0;
    const last = samples[samples.length - 1];
    if (last && Object.keys(totals).some((k) => totals[k] < last.totals[k])) samples.length = 0;
    samples.push({ t, totals });
    while (samples.length > 2 && t - samples[1].t >= RATE_WINDOW_SECONDS) samples.shift();
    if (samples.length < 2) return null;
    const first = samples[0];
    const seconds = t - first.t;
    if (seconds <= 0) return null;
    const perSecondOf = {};
    let sum = 0;
    for (const state of STATES) {
      const name = TOTAL_OF_STATE[state];
      perSecondOf[state] = (totals[name] - first.totals[name]) / seconds;
      sum += perSecondOf[state];
    }
    const hits = totals.hits - first.totals.hits;
    const misses = totals.misses - first.totals.misses;
    return {
      requests_per_second: sum,
      hit_ratio: hits + misses > 0 ? hits / (hits + misses) : null,
      per_second: perSecondOf,
      window: Math.round(seconds) + " s",
    };
  }

  // ---- charts -----------------------------------------------------------------------------
  let ratioChart = null;
  let ratioNamespaces = [];
  let ratesChart = null;

  const CHART_HEIGHT = 210; // pixels of plot and axes; the legend goes below

  function chartSize(id) {
    return { width: Math.max($(id).clientWidth, 200), height: CHART_HEIGHT };
  }

  const timeAxis = {
    space: 70,
    values: (u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleTimeString([],
      { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false })),
  };

  function makeRatioChart(namespaces) {
    if (ratioChart) ratioChart.destroy();
    ratioNamespaces = namespaces;
    const series = [{}, { label: "overall", stroke: "#1d2430", width: 2.5,
      value: (u, v) => percent(v) }];
    namespaces.forEach((ns, i) => series.push({ label: ns, stroke: PALETTE[i % PALETTE.length],
      width: 1.2, value: (u, v) => percent(v) }));
    ratioChart = new uPlot({
      ...chartSize("chart-hit-ratio"),
      series,
      scales: { y: { range: [0, 1] } },
      axes: [timeAxis, { values: (u, ticks) => ticks.map((v) => Math.round(v * 100) + " %"),
        size: 56 }],
      legend: { live: false },
      cursor: { show: true },
    }, ratioData(), $("chart-hit-ratio"));
  }

  function ratioData() {
    return [history.t, history.overall, ...ratioNamespaces.map((ns) => history.ratio[ns])];
  }

  function makeRatesChart() {
    const series = [{}, { label: "all", stroke: "#1d2430", width: 2, dash: [5, 4],
      value: (u, v) => perSecond(v) }];
    for (const state of STATES) series.push({ label: state, stroke: STATE_COLOURS[state],
      width: 1.5, value: (u, v) => perSecond(v) });
    ratesChart = new uPlot({
      ...chartSize("chart-rates"),
      series,
      scales: { y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [timeAxis, { values: (u, ticks) => ticks.map(perSecond), size: 56 }],
      legend: { live: false },
    }, ratesData(), $("chart-rates"));
  }

  function ratesData() {
    return [history.t, history.rates.total, ...STATES.map((s) => history.rates[s])];
  }

  window.addEventListener("resize", () => {
    if (ratioChart) ratioChart.setSize(chartSize("chart-hit-ratio"));
    if (ratesChart) ratesChart.setSize(chartSize("chart-rates"));
  });

  function record(t, stats, rate) {
    const namespaces = Object.keys((stats.cache && stats.cache.namespaces) || {}).sort();
    if (!ratioChart || namespaces.join() !== ratioNamespaces.join()) {
      for (const ns of namespaces) {
        if (!history.ratio[ns]) history.ratio[ns] = history.t.map(() => null);
      }
      makeRatioChart(namespaces);
    }
    pushBounded(history.t, t);
    // Over the rate window only: a gap while nothing was read, never the all-time ratio.
    pushBounded(history.overall, rate ? rate.hit_ratio : null);
    for (const ns of namespaces) {
      const counts = stats.cache.namespaces[ns];
      // No line for a namespace nothing was read from: its ratio of 0 would look like misses.
      pushBounded(history.ratio[ns], counts.hits + counts.misses > 0 ? counts.hit_ratio : null);
    }
    pushBounded(history.rates.total, rate ? rate.requests_per_second : null);
    for (const state of STATES) {
      pushBounded(history.rates[state], rate && rate.per_second ? rate.per_second[state] : null);
    }
    if (!ratesChart) makeRatesChart();
    ratioChart.setData(ratioData());
    ratesChart.setData(ratesData());
  }

  // ---- rendering --------------------------------------------------------------------------
  function row(cells) {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
      tr.appendChild(td);
    }
    return tr;
  }

  function mark(text) {
    const span = document.createElement("span");
    span.className = "stale-mark";
    span.textContent = text;
    return span;
  }

  function renderPools(stats) {
    const db = stats.db_pool || {};
    const dbWorkers = db.workers || [{ instance: "answering worker", pid: "–", ...db }];
    $("db-pool-rows").replaceChildren(...dbWorkers.map((w) => row([w.instance, String(w.pid),
      count(w.size), count(w.checked_out), count(w.checked_in), count(w.overflow)])));
    const redis = stats.redis || {};
    const redisWorkers = redis.workers || [{ instance: "answering worker", pid: "–", ...redis }];
    $("redis-pool-rows").replaceChildren(...redisWorkers.map((w) => row([w.instance,
      String(w.pid), count(w.pool_in_use), count(w.pool_max),
      redis.available === false ? mark("Redis down") : ""])));
  }

  // A worker's lease: "valid" (its near cache answers), "lapsed" (it does not, until its next
  // renewal comes back), "off" (no near cache), "unchecked" (CACHE_L1_LEASE_CHECK=false).
  function leaseState(w, leaseCheck) {
    if (!w.max_bytes) return "off";
    if (leaseCheck === false) return "unchecked";
    return w.lease_valid ? "valid" : "lapsed";
  }

  function badge(value) {
    const b = document.createElement("b");
    b.className = "badge " + value;
    b.textContent = value;
    return b;
  }

  function share(used, max) {
    if (!max) return bytes(used);
    return bytes(used) + " / " + bytes(max) + " (" + percent(used / max) + ")";
  }

  function renderNearCache(stats) {
    const tiers = (stats.cache && stats.cache.tiers) || {};
    setText("l1-hit-share", tiers.l1 ? percent(tiers.l1.hit_ratio) : "–");
    setText("l2-hit-share", tiers.l2 ? percent(tiers.l2.hit_ratio) : "–");
    const l1 = stats.l1 || {};
    setText("l1-bytes", bytes(l1.bytes));
    setText("l1-max-bytes", l1.max_bytes === 0 ? "0 (off)" : bytes(l1.max_bytes));
    setText("l1-lease-ms", l1.lease_ms === undefined ? "" : "lease " + l1.lease_ms + " ms" +
      (l1.lease_check === false ? " · not checked" : ""));
    $("l1-rows").replaceChildren(...(l1.workers || []).map((w) => row([w.instance,
      String(w.pid), count(w.entries), share(w.bytes, w.max_bytes), count(w.evictions),
      badge(leaseState(w, l1.lease_check))])));
  }

  function renderWarming(warming) {
    warming = warming || {};
    setBadge("warming-state", warming.state);
    const job = warming.current;
    const progress = $("warming-progress");
    if (job) {
      setText("warming-job", "Job " + job.job_id + " · " + (job.state || "running") +
        (job.source ? " · source " + job.source : ""));
      const processed = (job.done || 0) + (job.skipped || 0) + (job.errors || 0);
      progress.hidden = !job.total;
      progress.value = job.total ? Math.min(processed / job.total, 1) : 0;
      const parts = [count(processed) + " / " + count(job.total) + " keys",
        count(job.skipped) + " skipped", count(job.errors) + " errors"];
      if (job.keys_per_second !== undefined && job.keys_per_second !== null) {
        parts.push(perSecond(job.keys_per_second) + " keys/s");
      }
      if (job.eta_seconds !== undefined && job.eta_seconds !== null) {
        parts.push("ETA " + duration(job.eta_seconds));
      }
      setText("warming-figures", parts.join(" · "));
    } else {
      setText("warming-job", "No job running.");
      progress.hidden = true;
      setText("warming-figures", "");
    }
    const last = warming.last_run;
    setText("warming-last", last ? "Last run: " + (last.job_id || "") + " " + (last.state || "") +
      ": " + count(last.total) + " keys, " + count(last.done) + " loaded, " +
      count(last.skipped) + " skipped (fresh), " + count(last.errors) + " errors" +
      (last.finished_at ? ", finished " + last.finished_at : "") : "No run yet.");
  }

  function render(stats, rate) {
    const cache = stats.cache || {};
    setText("rps", rate ? perSecond(rate.requests_per_second) : "–");
    setText("rps-window", rate ? rate.window : "");
    setText("hit-ratio", rate && rate.hit_ratio !== null ? percent(rate.hit_ratio) : percent(cache.hit_ratio));
    setText("hit-ratio-window", rate && rate.hit_ratio !== null ? rate.window : "since purge");
    const longer = [];
    if (stats.rates) {
      for (const w of ["1m", "5m"]) {
        if (stats.rates[w]) longer.push(w + " " + percent(stats.rates[w].hit_ratio));
      }
    }
    longer.push("all " + percent(cache.hit_ratio));
    setText("hit-ratio-longer", longer.join(" · "));
    setText("hits-total", count(cache.hits));
    setText("misses-total", count(cache.misses));
    setText("stale-total", count(cache.stale));
    setText("bypass-total", count(cache.bypass));
    $("cache-partial").hidden = cache.complete !== false;

    const outbox = stats.outbox || {};
    setText("outbox-backlog", outbox.backlog === null || outbox.backlog === undefined ? "unknown" : count(outbox.backlog));
    $("outbox-partial").hidden = outbox.backlog !== null;
    setText("outbox-lag", outbox.lag_seconds === undefined ? "–" : duration(outbox.lag_seconds));

    const redis = stats.redis || {};
    setText("redis-memory", bytes(redis.used_memory_bytes));
    setText("redis-keys", count(redis.keys));
    setText("redis-evicted", count(redis.evicted_keys));
    $("redis-partial").hidden = redis.available !== false;

    const breakers = stats.breakers || {};
    setBadge("breaker-redis", breakers.redis && breakers.redis.state);
    setBadge("breaker-database", breakers.database && breakers.database.state);
    renderPools(stats);
    renderNearCache(stats);
    renderWarming(stats.warming);
  }

  // ---- polling ----------------------------------------------------------------------------
  let lastSuccess = null;

  function setStatus(kind, text) {
    const el = $("status");
    el.className = "pill pill-" + kind;
    el.textContent = text;
    document.body.classList.toggle("stale", kind === "stale" || kind === "error");
  }

  function staleFor() {
    if (!lastSuccess) return "no figures yet";
    return "last update " + duration((Date.now() - lastSuccess) / 1000) + " ago";
  }

  function askStatsToken(message) {
    const error = $("token-error");
    error.hidden = !message;
    error.textContent = message || "";
    $("token-form").hidden = false;
    $("stats-token").focus();
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("stats-token").value.trim();
    if (!token) return;
    sessionStorage.setItem(STATS_TOKEN_KEY, token);
    $("stats-token").value = "";
    $("token-form").hidden = true;
    poll();
  });

  let timer = null;
  async function poll() {
    clearTimeout(timer);
    const token = sessionStorage.getItem(STATS_TOKEN_KEY);
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    let answer;
    try {
      answer = await fetch("/stats", { headers, cache: "no-store" });
    } catch (err) {
      setStatus("stale", "stale: the service does not answer");
      setText("updated", staleFor());
      timer = setTimeout(poll, POLL_MS);
      return;
    }
    if (answer.status === 401) {
      setStatus("wait", "token needed");
      if (token) sessionStorage.removeItem(STATS_TOKEN_KEY);
      askStatsToken(token ? "That token was refused." : "");
      return; // polling resumes when a token is entered
    }
    if (!answer.ok) {
      setStatus("stale", "stale: /stats answered " + answer.status);
      setText("updated", staleFor());
      timer = setTimeout(poll, POLL_MS);
      return;
    }
    try {
      const stats = await answer.json();
      const t = Date.now() / 1000;
      const derived = derivedRates(t, stats.cache || {});
      let rate = derived;
      if (stats.rates && stats.rates["10s"]) rate = { ...stats.rates["10s"], window: "10 s" };
      render(stats, rate);
      record(t, stats, rate);
      lastSuccess = Date.now();
      const partial = stats.cache && stats.cache.complete === false;
      setStatus(partial ? "stale" : "live", partial ? "partial: Redis is down" : "live");
      setText("updated", "updated " + new Date().toLocaleTimeString());
    } catch (err) {
      setStatus("error", "error: " + err.message);
    }
    timer = setTimeout(poll, POLL_MS);
  }

  // ---- warming ----------------------------------------------------------------------------
  function showAdminTokenInput(show) {
    $("admin-token-label").hidden = !show;
    $("admin-forget").hidden = show;
  }

  $("admin-forget").addEventListener("click", () => {
    sessionStorage.removeItem(ADMIN_TOKEN_KEY);
    showAdminTokenInput(true);
  });

  async function problemText(answer) {
    try {
      const doc = await answer.json();
      return doc;
    } catch (err) {
      return {};
    }
  }

  $("warm-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = $("warm-result");
    const typed = $("admin-token").value.trim();
    if (typed) sessionStorage.setItem(ADMIN_TOKEN_KEY, typed);
    $("admin-token").value = "";
    const token = sessionStorage.getItem(ADMIN_TOKEN_KEY);
    if (!token) {
      showAdminTokenInput(true);
      result.className = "small error";
      result.textContent = "Enter the admin token first.";
      $("admin-token").focus();
      return;
    }
    showAdminTokenInput(false);
    $("warm-button").disabled = true;
    result.className = "small muted";
    result.textContent = "Asking…";
    try {
      const answer = await fetch("/admin/cache/warm", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
        body: "{}",
        cache: "no-store",
      });
      const doc = await problemText(answer);
      if (answer.status === 202) {
        result.className = "small";
        result.textContent = "Warming started: job " + doc.job_id + ".";
        result.dataset.jobId = doc.job_id;
        poll();
      } else if (answer.status === 409) {
        const running = doc.job_id || doc.running_job_id || "";
        result.className = "small error";
        result.textContent = "A warming job is already running" + (running ? ": job " + running : "") + ".";
      } else if (answer.status === 401 || answer.status === 403) {
        sessionStorage.removeItem(ADMIN_TOKEN_KEY);
        showAdminTokenInput(true);
        result.className = "small error";
        result.textContent = (doc.title || "Refused") + " (" + answer.status + "): " + (doc.detail || "the token was refused") + ".";
      } else if (answer.status === 404 || answer.status === 405) {
        result.className = "small error";
        result.textContent = "This service has no warming endpoint (" + answer.status + " " + (doc.title || answer.statusText) + ").";
      } else {
        result.className = "small error";
        result.textContent = "Warming failed (" + answer.status + "): " + (doc.detail || doc.title || answer.statusText) + ".";
      }
    } catch (err) {
      result.className = "small error";
      result.textContent = "The service did not answer: " + err.message;
    } finally {
      $("warm-button").disabled = false;
    }
  });

  showAdminTokenInput(!sessionStorage.getItem(ADMIN_TOKEN_KEY));
  setInterval(() => { if (lastSuccess && Date.now() - lastSuccess > 3 * POLL_MS) setText("updated", staleFor()); }, 1000);
  poll();
})();
