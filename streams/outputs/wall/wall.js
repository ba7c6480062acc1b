// The monitoring wall: hourly totals from /api/kpis, then live updates over SSE.
// Values are recomputed here from numerators and denominators (never by
// averaging ratios), for the last 24 hours of event time and the 24 before.
"use strict";

const TILES = [
  // kpi, label, kind (leading/lagging), better ("up" or "down")
  ["leads", "Leads", "leading", "up"],
  ["visitor_conversion_rate", "Visitor conversion rate", "leading", "up"],
  ["bounce_rate", "Bounce rate", "leading", "down"],
  ["cpl", "Cost per lead", "lagging", "down"],
  ["spend", "Spend", "lagging", "none"],
  ["revenue", "Revenue", "lagging", "up"],
  ["win_rate", "Win rate", "lagging", "up"],
  ["cac", "Customer acquisition cost", "lagging", "down"],
];
const CHANNEL_KPIS = ["sessions", "leads", "visitor_conversion_rate", "spend", "cpl",
                      "revenue"];
const HOUR = 3600e3;

const hourly = new Map();   // kpi -> Map(windowStartMs -> snapshot)  (total, 1h)
const channels = new Map(); // channel -> Map(kpi -> snapshot)         (24h rolling, newest)
const rolling = new Map();  // kpi -> Map(windowEndMs -> snapshot)     (24h rolling, total)
let meta = {};  // kpi -> catalogue entry (aggregation, additive)
let units = {};
let dirty = true;
let known = new Set();  // KPIs this worker computes (/api/catalogue)
let tz = "UTC";  // the reporting zone (KPI_TIMEZONE): times on the wall are local to it
let channelLabels = {};  // KPI_CHANNEL_LABELS: channel -> the name shown
// ?static=1: one load and one render, no event stream (a headless screenshot can exit)
const STATIC = new URLSearchParams(location.search).get("static") === "1";
const PERIOD = "last 24 h";

// "paid_search" reads as "Paid search" unless KPI_CHANNEL_LABELS names it otherwise
function channelName(ch) {
  if (channelLabels[ch]) return channelLabels[ch];
  const words = ch.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

// the oldest hour any tile's series holds: a change is shown only against a previous
// 24 h that the data reaches back to (a replay's first day has no previous day)
function earliestHour() {
  let first = null;
  for (const series of hourly.values()) {
    for (const t of series.keys()) if (first === null || t < first) first = t;
  }
  return first;
}

// "2026-10-25 14:00" in the reporting zone
function localTime(ms) {
  const parts = new Intl.DateTimeFormat("en-CA", {timeZone: tz, year: "numeric",
    month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23"})
    .formatToParts(new Date(ms));
  const p = Object.fromEntries(parts.map(x => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}`;
}

// Cost is reported after the fact: a cost-based snapshot says whether the spend
// input has passed its end (cost_complete). The newest hour whose cost is complete:
function costCompleteUntil(kpi) {
  const series = hourly.get(kpi);
  let until = null;
  if (!series) return null;
  for (const [t, doc] of series) {
    if (doc.cost_complete === true && (until === null || t + HOUR > until)) until = t + HOUR;
  }
  return until;
}

function tileKpis() { return TILES.map(t => t[0]).filter(k => known.has(k)); }

function fmt(value, unit) {
  if (value === null || value === undefined || !isFinite(value)) return "—";
  if (unit === "ratio") return (value * 100).toFixed(value < 0.1 ? 2 : 1) + " %";
  if (unit === "count") return Math.round(value).toLocaleString("en-US");
  if (unit && /^[A-Z]{3}$/.test(unit)) {
    try {
      return new Intl.NumberFormat("en-US", {style: "currency", currency: unit,
        maximumFractionDigits: value >= 100 ? 0 : 2}).format(value);
    } catch (e) { return value.toFixed(2) + " " + unit; }
  }
  return value.toFixed(2);
}

function keep(doc) {
  units[doc.kpi] = doc.unit;
  if (doc.bucket === "1h" && Object.keys(doc.dims).length === 0) {
    if (!hourly.has(doc.kpi)) hourly.set(doc.kpi, new Map());
    const t = Date.parse(doc.window_start);
    const old = hourly.get(doc.kpi).get(t);
    if (!old || old.revision <= doc.revision || doc.computed_at >= old.computed_at) {
      hourly.get(doc.kpi).set(t, doc);
    }
  } else if (doc.bucket === "24h" && Object.keys(doc.dims).length === 0) {
    // the engine's own 24 h figure: distinct users are merged by sketch, not summed
    if (!rolling.has(doc.kpi)) rolling.set(doc.kpi, new Map());
    const t = Date.parse(doc.window_end);
    const old = rolling.get(doc.kpi).get(t);
    if (!old || old.revision <= doc.revision) rolling.get(doc.kpi).set(t, doc);
  } else if (doc.bucket === "24h" && doc.dims.channel) {
    const ch = doc.dims.channel;
    if (!channels.has(ch)) channels.set(ch, new Map());
    const old = channels.get(ch).get(doc.kpi);
    if (!old || old.window_start < doc.window_start ||
        (old.window_start === doc.window_start && old.revision <= doc.revision)) {
      channels.get(ch).set(doc.kpi, doc);
    }
  }
  dirty = true;
}

// the largest time key over a Map(kpi -> Map(time -> snapshot)), or null
function newestKey(byKpi) {
  let latest = null;
  for (const series of byKpi.values()) {
    for (const t of series.keys()) if (latest === null || t > latest) latest = t;
  }
  return latest;
}

// A count or sum has denominator 1 in every bucket: its 24 h value is the summed
// numerator. A ratio is summed numerator over summed denominator. Distinct users do
// not add up across hours, so those KPIs come only from the engine's 24 h views.
function sumWindow(kpi, from, to) {
  const series = hourly.get(kpi);
  const m = meta[kpi] || {};
  if (!series || m.additive === false) return null;
  let num = 0, den = 0, seen = false;
  for (const [t, doc] of series) {
    if (t >= from && t < to) { num += doc.numerator; den += doc.denominator; seen = true; }
  }
  if (!seen) return null;
  if (m.aggregation === "sum") return {num, den: 1, value: num};
  return {num, den, value: den ? num / den : null};
}

function window24(kpi, end) {
  const doc = rolling.get(kpi) && rolling.get(kpi).get(end);
  if (doc) return {num: doc.numerator, den: doc.denominator, value: doc.value,
                   costComplete: doc.cost_complete};
  const sum = sumWindow(kpi, end - 24 * HOUR, end);
  if (sum && "cost_complete" in (hourly.get(kpi)?.values().next().value || {})) {
    sum.costComplete = [...hourly.get(kpi)].every(([t, d]) =>
      t < end - 24 * HOUR || t >= end || d.cost_complete !== false);
  }
  return sum;
}

function sparkPoints(kpi, now) {
  const series = hourly.get(kpi);
  const vals = [];
  for (let i = 23; i >= 0; i--) {
    const doc = series && series.get(now - i * HOUR);
    vals.push(doc && doc.value !== null ? doc.value : null);
  }
  const real = vals.filter(v => v !== null);
  if (real.length < 2) return "";
  const lo = Math.min(...real), hi = Math.max(...real), span = hi - lo || 1;
  return vals.map((v, i) => v === null ? null :
      `${(i / 23 * 300).toFixed(1)},${(44 - (v - lo) / span * 40).toFixed(1)}`)
    .filter(Boolean).join(" ");
}

function buildTiles() {
  for (const [kpi, label, kind] of TILES) {
    const el = document.createElement("div");
    el.className = "tile nodata";
    el.id = "tile-" + kpi;
    el.dataset.kpi = kpi;
    el.innerHTML = `<div class="label">${label} <span class="period">${PERIOD}</span></div>
      <div class="value">—</div><div class="delta">no data yet</div>
      <svg viewBox="0 0 300 46" preserveAspectRatio="none"><polyline points=""/></svg>`;
    document.getElementById("tiles-" + kind).appendChild(el);
  }
}

function render() {
  if (!dirty) return;
  dirty = false;
  // the newest hour: the end of the engine's newest 24 h view (event time, not the
  // wall clock; prorated costs can reach into later hours), else the newest bucket
  const newestEnd = newestKey(rolling);
  const last = newestEnd !== null ? newestEnd - HOUR : newestKey(hourly);
  if (last === null) return;
  const now = last;
  // "as of" is the wall clock; the data's own end (event time) is named beside it
  // (live, the newest hour is still open: its data runs to now, not to its end)
  const dataTo = localTime(Math.min(now + HOUR, Date.now())), clock = localTime(Date.now());
  document.getElementById("asof").textContent = "data to " +
    (dataTo.slice(0, 10) === clock.slice(0, 10) ? dataTo.slice(11) : dataTo) +
    " · as of " + clock + " " + tz;
  const first = earliestHour();
  const covered = first !== null && first <= now + HOUR - 48 * HOUR;
  for (const [kpi, , , better] of TILES) {
    const el = document.getElementById("tile-" + kpi);
    let cur = window24(kpi, now + HOUR);
    let prev = covered ? window24(kpi, now - 23 * HOUR) : null;
    if (!cur) {
      const inputs = (meta[kpi] || {}).inputs || [];
      if (known.has(kpi) && inputs.length) {
        el.querySelector(".delta").textContent = "waiting for " + inputs.join(" and ");
      }
      continue;
    }
    el.classList.remove("nodata");
    const delta = el.querySelector(".delta");
    // the newest hours' spend is not reported yet: a CPL over them would look too good.
    // Show the 24 h that end with the newest hour whose cost is complete, and say so.
    el.classList.toggle("pending", cur.costComplete === false);
    if (cur.costComplete === false) {
      const until = costCompleteUntil(kpi);
      const done = until === null ? null : sumWindow(kpi, until - 24 * HOUR, until);
      el.querySelector(".value").textContent = done ? fmt(done.value, units[kpi]) : "—";
      el.dataset.value = done && done.value !== null ? String(done.value) : "";
      delta.textContent = done ? `cost pending · 24 h to ${localTime(until).slice(11)}`
        : "cost pending";
      delta.className = "delta pending";
      el.querySelector("polyline").setAttribute("points", sparkPoints(kpi, now));
      continue;
    }
    el.querySelector(".value").textContent = fmt(cur.value, units[kpi]);
    if (prev && prev.value && cur.value !== null) {
      const change = (cur.value - prev.value) / Math.abs(prev.value);
      const arrow = change > 0 ? "▲" : change < 0 ? "▼" : "■";
      delta.textContent = `${arrow} ${(Math.abs(change) * 100).toFixed(1)} % vs previous 24 h`;
      const good = better === "up" ? change > 0 : better === "down" ? change < 0 : null;
      delta.className = "delta" + (good === null || change === 0 ? "" : good ? " good" : " bad");
    } else {
      delta.textContent = covered ? "no previous 24 h to compare"
        : "no previous 24 h in the data yet";
      delta.className = "delta";
    }
    el.querySelector("polyline").setAttribute("points", sparkPoints(kpi, now));
    el.dataset.value = cur.value === null ? "" : String(cur.value);
  }
  const body = document.querySelector("#channels tbody");
  const rows = [...channels.entries()]
    .sort((a, b) => (b[1].get("sessions")?.value || 0) - (a[1].get("sessions")?.value || 0));
  body.innerHTML = rows.map(([ch, byKpi]) => `<tr data-channel="${ch}"><td>` +
    channelName(ch) + "</td>" + CHANNEL_KPIS.map(k => {
    const d = byKpi.get(k);
    const costKpi = k === "spend" || k === "cpl";
    // a channel with no spend record: its CPL is not 0, it is unknown
    if (costKpi && !byKpi.has("spend")) return '<td class="nocost">no cost data</td>';
    if (!d) return "<td>—</td>";
    const pending = d.cost_complete === false;
    return `<td${pending ? ' class="pending" title="cost pending: spend not all reported"'
      : ""}>` + fmt(d.value, d.unit) + (pending ? " *" : "") + "</td>";
  }).join("") + "</tr>").join("");
}

async function load() {
  try {
    const cat = await (await fetch("/api/catalogue")).json();
    known = new Set(cat.kpis.map(k => k.name));
    tz = cat.tz || "UTC";
    channelLabels = cat.channel_labels || {};
    meta = Object.fromEntries(cat.kpis.map(k => [k.name, k]));
  } catch (e) { /* retried by the reload below */ }
  for (const [kpi] of TILES) {
    if (!known.has(kpi)) document.querySelector(`#tile-${kpi} .delta`).textContent =
      "not computed by this worker";
  }
  const hourlyUrl = `/api/kpis?kpi=${tileKpis().join(",")}&bucket=1h&dim=total&limit=100000`;
  const chKpis = CHANNEL_KPIS.filter(k => known.has(k));
  const rollKpis = [...new Set([...tileKpis(), ...chKpis])];
  const chUrl = `/api/kpis?kpi=${rollKpis.join(",")}&bucket=24h&limit=100000`;
  for (const url of [hourlyUrl, chUrl]) {
    try {
      const res = await fetch(url);
      if (res.ok) (await res.json()).snapshots.forEach(keep);
    } catch (e) { /* the worker may be starting; SSE will fill in */ }
  }
  render();
}

function live() {
  const kpis = [...new Set([...tileKpis(), ...CHANNEL_KPIS])].filter(k => known.has(k)).join(",");
  const es = new EventSource(`/api/kpis/stream?kpi=${kpis}&bucket=1h,24h`);
  const conn = document.getElementById("conn");
  es.onopen = () => { conn.className = "conn up"; };
  es.onerror = () => { conn.className = "conn down"; };
  es.addEventListener("snapshot", ev => keep(JSON.parse(ev.data)));
}

const STATUS = {ahead: "ahead", on_pace: "on pace", behind: "behind",
                early: "too early to tell", no_data: "no data yet"};
const PERIODS = {"1w": "this week", "1mo": "this month", "1q": "this quarter"};

// one bar per target (KPI_TARGETS): filled to the share of the goal reached, a marker
// where it should be by now; for an at-most goal (CPL) the bar is the value against
// the ceiling, and the marker is the ceiling itself
function renderTargets(docs) {
  const box = document.getElementById("pacing");
  if (!docs.length) { box.hidden = true; return; }
  box.hidden = false;
  document.getElementById("bars").innerHTML = docs.map(d => {
    const scale = Math.max(d.goal, d.value || 0, d.expected || 0) || 1;
    const fill = d.value === null ? 0 : Math.max(0, Math.min(1, d.value / scale));
    const mark = d.expected === null ? null : Math.max(0, Math.min(1, d.expected / scale));
    const dim = Object.entries(d.dims).map(([k, v]) => k === "channel" ? channelName(v) : v);
    const tile = TILES.find(t => t[0] === d.kpi);
    const words = d.kpi.replace(/_/g, " ");
    const what = tile ? tile[1] : words.charAt(0).toUpperCase() + words.slice(1);
    const goal = (d.direction === "at_least" ? "≥ " : "≤ ") + fmt(d.goal, d.unit);
    const proj = d.projected === null ? "" : ` · projected ${fmt(d.projected, d.unit)}` +
      (d.covered ? "" : " · since data start");
    return `<div class="target ${d.status}" data-target="${d.target}">` +
      `<div class="head"><span class="name">${what}${dim.length ? " · " + dim.join(" ") : ""}` +
      ` ${PERIODS[d.period] || d.period}</span><span class="status">${STATUS[d.status]}</span></div>` +
      `<div class="track"><div class="fill" style="width:${(fill * 100).toFixed(1)}%"></div>` +
      (mark === null ? "" : `<div class="mark" style="left:calc(${(mark * 100).toFixed(1)}% - 1px)"></div>`) +
      `</div><div class="detail" title="${d.covered ? "" : "the data starts inside the period: the run rate is over the part it covers"}">` +
      `${fmt(d.value, d.unit)} of ${goal}${proj}</div></div>`;
  }).join("");
}

async function pollTargets() {
  try {
    const res = await fetch("/api/targets");
    if (res.ok) renderTargets((await res.json()).targets);
  } catch (e) { /* keep the last state */ }
}

async function pollAlerts() {
  const box = document.getElementById("alerts");
  try {
    const res = await fetch("/api/alerts");
    const doc = await res.json();
    if (doc.alerts.length) {
      box.innerHTML = doc.alerts.map(a =>
        `<div class="alert">⚠ ${a.name}<small>${a.summary || ""}</small></div>`).join("");
      box.hidden = false;
    } else {
      box.hidden = true;
    }
  } catch (e) { /* keep the last state */ }
}

buildTiles();
if (STATIC) {
  load().then(pollAlerts).then(pollTargets).then(() => { dirty = true; render();
                                       document.body.dataset.ready = "1"; });
} else {
  load().then(live).then(pollTargets);
  pollAlerts();
  setInterval(pollTargets, 10000);
  setInterval(render, 1000);
  setInterval(pollAlerts, 5000);
}
