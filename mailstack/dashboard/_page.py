"""The dashboard's HTML, CSS and JavaScript (served by mailstack itself: no CDN, no build step).

The page is static; ``app.js`` fetches ``/dashboard/api/...`` and fills it in, writing text with
``textContent`` only, so nothing from a message (a subject, an address) can become markup. The content
security policy allows scripts and styles from the dashboard itself and nothing else.
"""

from __future__ import annotations

import html

__all__ = ["APP_CSS", "APP_JS", "CSP", "FAVICON", "dashboard_page", "login_page"]

FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="12" y="2" rx="2" '
    'fill="#1a73e8"/><path d="M1 3l7 6 7-6" stroke="#fff" stroke-width="1.5" fill="none"/></svg>'
)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _document(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        '<link rel=icon href="/dashboard/favicon.svg" type="image/svg+xml">'
        '<link rel=stylesheet href="/dashboard/app.css"></head>'
        f"<body>{body}</body></html>"
    )


def login_page(error: str = "") -> str:
    message = f"<p class=error role=alert>{html.escape(error)}</p>" if error else ""
    return _document(
        "mailstack - sign in",
        '<main class=login><h1>mailstack</h1><form method=post action="/dashboard/login">'
        f"{message}"
        "<label>User <input name=username autocomplete=username required maxlength=100></label>"
        "<label>Password <input name=password type=password autocomplete=current-password required></label>"
        "<button type=submit>Sign in</button></form></main>",
    )


def dashboard_page(username: str) -> str:
    cards = "".join(
        f'<div class=card><div class=label>{label}</div><div class=value data-metric="{metric}">-</div>'
        f'<div class=rate data-rate="{metric}"></div></div>'
        for metric, label in (
            ("sent", "Emails sent"),
            ("delivered", "Delivered"),
            ("opened", "Opened"),
            ("clicked", "Clicked"),
            ("bounced", "Bounces"),
            ("spam", "Spam complaints"),
            ("unsubscribed", "Unsubscribed"),
            ("converted", "Conversions"),
        )
    )
    return _document(
        "mailstack - dashboard",
        "<header><h1>mailstack</h1>"
        "<label>API key <select id=api-key></select></label>"
        f"<span class=user>{html.escape(username)}</span>"
        '<form method=post action="/dashboard/logout"><button type=submit>Sign out</button></form></header>'
        f"<main><section id=totals class=cards>{cards}</section>"
        "<section><h2>Last 30 days</h2>"
        '<div id=chart role=img aria-label="Daily delivered, opened and clicked">'
        "</div><p class=legend><span class=k-delivered>delivered</span> <span class=k-opened>opened</span> "
        "<span class=k-clicked>clicked</span></p></section>"
        "<section><h2>Campaigns</h2><table id=campaigns><thead><tr><th>Campaign</th><th>Sent</th>"
        "<th>Delivered</th><th>Opened</th><th>Clicked</th><th>Bounced</th><th>Spam</th><th>Unsub.</th>"
        "<th>Open rate</th><th>Last sent</th></tr></thead><tbody></tbody></table></section>"
        "<section><h2>Mailbox providers</h2><table id=providers><thead><tr><th>Provider</th><th>Sent</th>"
        "<th>Delivered</th><th>Opened</th><th>Clicked</th><th>Bounced</th><th>Spam</th><th>Open rate</th>"
        "<th>Click-through</th></tr></thead><tbody></tbody></table></section>"
        "<section><h2>Find a message</h2><form id=search><input id=query name=q maxlength=998 "
        'placeholder="Whole recipient address (no partial match), MessageID or Message-ID header">'
        "<button type=submit>Search</button>"
        "</form><table id=results><thead><tr><th>MessageID</th><th>Recipient</th><th>Subject</th>"
        "<th>Campaign</th><th>Status</th><th>Accepted</th></tr></thead><tbody></tbody></table>"
        "<ol id=timeline></ol></section>"
        "<section><h2>Suppression list</h2><table id=suppressions><thead><tr><th>Address</th><th>Scope</th>"
        "<th>Source</th><th>Reason</th><th>Since</th></tr></thead><tbody></tbody></table></section></main>"
        '<script src="/dashboard/app.js"></script>',
    )


APP_CSS = """
:root{--fg:#1f2933;--muted:#616e7c;--line:#e4e7eb;--accent:#1a73e8;--bg:#f5f7fa}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;
color:var(--fg);background:var(--bg)}
header{display:flex;gap:1.5em;align-items:center;padding:.8em 1.5em;background:#fff;
border-bottom:1px solid var(--line)}header h1{font-size:1.2em;margin:0 auto 0 0}header form{margin:0}
main{padding:1.5em;max-width:1200px;margin:auto}section{background:#fff;border:1px solid var(--line);
border-radius:6px;padding:1em 1.2em;margin-bottom:1.2em}h2{font-size:1em;margin:0 0 .8em}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:.8em;background:none;
border:0;padding:0}.card{background:#fff;border:1px solid var(--line);border-radius:6px;padding:.8em 1em}
.card .label{color:var(--muted);font-size:.85em}.card .value{font-size:1.6em;font-weight:600}
.card .rate{color:var(--muted);font-size:.85em;min-height:1.2em}
table{width:100%;border-collapse:collapse}th,td{text-align:left;padding:.35em .5em;
border-bottom:1px solid var(--line)}th{color:var(--muted);font-weight:500}td.n{text-align:right}
#chart svg{width:100%;height:220px}.legend span{margin-right:1em}.legend span:before{content:"";
display:inline-block;width:.8em;height:.8em;margin-right:.3em}.k-delivered:before{background:#3e7bfa}
.k-opened:before{background:#27ae60}.k-clicked:before{background:#f2994a}
button{font:inherit;padding:.4em 1em;border:0;border-radius:4px;background:var(--accent);color:#fff;
cursor:pointer}input,select{font:inherit;padding:.35em .5em;border:1px solid var(--line);border-radius:4px}
#search{display:flex;gap:.5em;margin-bottom:.8em}#query{flex:1}#results tbody tr{cursor:pointer}
#timeline{color:var(--fg)}#timeline li{margin:.2em 0}.login{max-width:22em;margin:5em auto;background:#fff;
border:1px solid var(--line);border-radius:6px;padding:1.5em}.login label{display:block;margin:.8em 0}
.login input{width:100%}.error{color:#c0392b}
"""

APP_JS = r"""
"use strict";
const $ = (s) => document.querySelector(s);
const fmt = (n) => Number(n).toLocaleString("en-US");
const pct = (r) => (100 * r).toFixed(1) + "%";
async function get(path) {
  const r = await fetch(path, {credentials: "same-origin"});
  if (r.status === 401) { location.href = "/dashboard/login"; throw new Error("signed out"); }
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}
function cell(row, value, numeric) {
  const td = document.createElement("td");
  td.textContent = value;
  if (numeric) td.className = "n";
  row.appendChild(td);
}
function fill(tbody, rows, columns) {
  tbody.replaceChildren();
  for (const item of rows) {
    const tr = document.createElement("tr");
    for (const [value, numeric] of columns(item)) cell(tr, value, numeric);
    tbody.appendChild(tr);
  }
  return tbody;
}
function setMetric(name, value, rate) {
  $(`[data-metric="${name}"]`).textContent = fmt(value);
  $(`[data-rate="${name}"]`).textContent = rate === null ? "" : pct(rate);
}
function chart(series) {
  const w = 900, h = 220, pad = 28, box = $("#chart");
  const max = Math.max(1, ...series.flatMap((d) => [d.Delivered, d.Opened, d.Clicked]));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const x = (i) => pad + (i * (w - 2 * pad)) / Math.max(1, series.length - 1);
  const y = (v) => h - pad - (v * (h - 2 * pad)) / max;
  const axis = document.createElementNS(ns, "path");
  axis.setAttribute("d", `M${pad},${pad}V${h - pad}H${w - pad}`);
  axis.setAttribute("stroke", "#cbd2d9"); axis.setAttribute("fill", "none");
  svg.appendChild(axis);
  for (const [key, color] of [["Delivered", "#3e7bfa"], ["Opened", "#27ae60"], ["Clicked", "#f2994a"]]) {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", series.map((d, i) => `${x(i)},${y(d[key])}`).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", color);
    line.setAttribute("stroke-width", "2");
    line.dataset.series = key;
    svg.appendChild(line);
  }
  const top = document.createElementNS(ns, "text");
  top.setAttribute("x", 2); top.setAttribute("y", pad); top.setAttribute("font-size", "11");
  top.textContent = fmt(max);
  svg.appendChild(top);
  box.replaceChildren(svg);
}
async function load() {
  const key = $("#api-key").value;
  const data = await get(`/dashboard/api/overview?key=${encodeURIComponent(key)}&days=30`);
  const t = data.Totals;
  setMetric("sent", t.Total, null);
  setMetric("delivered", t.MessageSentCount, t.DeliveredRate);
  setMetric("opened", t.MessageOpenedCount, t.OpenRate);
  setMetric("clicked", t.MessageClickedCount, t.ClickRate);
  const bounced = t.MessageHardBouncedCount + t.MessageSoftBouncedCount;
  setMetric("bounced", bounced, t.HardBouncedRate + t.SoftBouncedRate);
  setMetric("spam", t.MessageSpamCount, t.SpamRate);
  setMetric("unsubscribed", t.MessageUnsubscribedCount, t.UnsubscribedRate);
  setMetric("converted", t.MessageConvertedCount, t.ConversionRate);
  chart(data.Series);
  fill($("#campaigns tbody"), data.Campaigns, (c) => [
    [c.SourceID], [fmt(c.Total), 1], [fmt(c.MessageSentCount), 1], [fmt(c.MessageOpenedCount), 1],
    [fmt(c.MessageClickedCount), 1], [fmt(c.MessageHardBouncedCount + c.MessageSoftBouncedCount), 1],
    [fmt(c.MessageSpamCount), 1], [fmt(c.MessageUnsubscribedCount), 1], [pct(c.OpenRate), 1], [c.LastSentDay],
  ]);
  fill($("#providers tbody"), data.Providers, (p) => [
    [p.ESPName], [fmt(p.AttemptedMessagesCount), 1], [fmt(p.DeliveredMessagesCount), 1],
    [fmt(p.OpenedMessagesCount), 1], [fmt(p.ClickedMessagesCount), 1],
    [fmt(p.HardBouncedMessagesCount + p.SoftBouncedMessagesCount), 1], [fmt(p.SpamReportsCount), 1],
    [pct(p.OpenRate), 1], [pct(p.ClickThroughRate), 1],
  ]);
  const supp = await get("/dashboard/api/suppressions");
  fill($("#suppressions tbody"), supp.Data, (s) => [
    [s.Email], [s.Scope], [s.Source], [s.Reason], [new Date(s.CreatedAt * 1000).toISOString().slice(0, 16)],
  ]);
  document.body.dataset.loaded = "yes";
}
async function timeline(id) {
  const key = $("#api-key").value;
  const data = await get(`/dashboard/api/messages/${id}/events?key=${encodeURIComponent(key)}`);
  const list = $("#timeline");
  list.replaceChildren();
  for (const e of data.Data) {
    const li = document.createElement("li");
    const extra = Object.entries(e.Detail).map(([k, v]) => `${k}=${v}`).join(" ");
    const at = new Date(e.At * 1000).toISOString().replace("T", " ").slice(0, 19);
    li.textContent = `${at}  ${e.Type}  ${extra}`;
    li.dataset.type = e.Type;
    list.appendChild(li);
  }
  list.dataset.message = id;
}
async function search(ev) {
  ev.preventDefault();
  const key = $("#api-key").value;
  const q = $("#query").value;
  const data = await get(`/dashboard/api/messages?key=${encodeURIComponent(key)}&q=${encodeURIComponent(q)}`);
  const body = fill($("#results tbody"), data.Data, (m) => [
    [m.MessageID, 1], [m.Recipient], [m.Subject], [m.Campaign], [m.Status],
    [new Date(m.CreatedAt * 1000).toISOString().replace("T", " ").slice(0, 19)],
  ]);
  body.querySelectorAll("tr").forEach((tr, i) => {
    tr.addEventListener("click", () => timeline(data.Data[i].MessageID));
  });
  $("#results").dataset.count = data.Data.length;
  if (data.Data.length === 1) await timeline(data.Data[0].MessageID);
}
async function start() {
  const keys = await get("/dashboard/api/keys");
  const select = $("#api-key");
  for (const k of keys.Data) {
    const o = document.createElement("option");
    o.value = k.ID; o.textContent = `${k.Name} (${k.PublicKey.slice(0, 8)}...)`;
    select.appendChild(o);
  }
  select.addEventListener("change", load);
  $("#search").addEventListener("submit", search);
  await load();
}
start();
"""
