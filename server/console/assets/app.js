// Vigil console: the incident list with live updates and the incident page.
// Every piece of incident data reaches the page as a text node (see el):
// process names, arguments and file paths are chosen by whoever runs on the
// host, so none of it is ever parsed as HTML.
"use strict";

const main = document.getElementById("main");
const live = document.getElementById("live");
let source = null; // the EventSource of the current view

// el builds an element. props sets properties (className, href, title...);
// children are nodes or strings, strings becoming text nodes.
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v !== undefined && v !== null) e[k] = v;
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function severityName(s) {
  return String(s || "SEVERITY_UNSPECIFIED").replace(/^SEVERITY_/, "").toLowerCase();
}

function severityBadge(s) {
  const name = severityName(s);
  return el("span", { className: "sev sev-" + name.replace(/[^a-z]/g, "") }, name);
}

// fmtTime shows an RFC 3339 timestamp in UTC to the second.
function fmtTime(ts) {
  if (!ts) return "-";
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toISOString().replace(/\.\d+Z$/, "Z");
}

function host(inc) {
  return inc.hostname || inc.hostId || "-";
}

// fmtProcess formats a process as "PID USER EXE ARGV..." with notes.
function fmtProcess(p) {
  const parts = [String(p.pid || 0), p.user || "uid " + (p.uid || 0), p.exe || p.comm || "-"];
  if (p.exeDeleted) parts.push("(deleted)");
  if (p.exeMemfd) parts.push("(memfd)");
  for (const a of p.args || []) parts.push(/^[^\s"'\\]+$/.test(a) ? a : JSON.stringify(a));
  if (p.argsTruncated) parts.push("…");
  if (p.exited) parts.push("(exited, status " + (p.exitCode || 0) + ")");
  return parts.join(" ");
}

function attack(a) {
  if (!a) return "";
  const tactic = [a.tacticId, a.tactic].filter(Boolean).join(" ");
  const tech = [a.techniqueId, a.technique].filter(Boolean).join(" ");
  return [tactic, tech].filter(Boolean).join(" / ");
}

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.status + " " + r.statusText);
  return body;
}

function setLive(state) {
  live.className = "live " + state;
  live.textContent = state === "on" ? "live" : state === "off" ? "reconnecting…" : "";
}

// follow opens the event stream after cursor and hands every incident to fn.
function follow(query, after, fn) {
  if (source) source.close();
  const q = new URLSearchParams(query);
  q.set("after", after || "0");
  source = new EventSource("api/events?" + q.toString());
  source.addEventListener("open", () => setLive("on"));
  source.addEventListener("error", () => setLive("off"));
  source.addEventListener("incident", (ev) => {
    try {
      fn(JSON.parse(ev.data));
    } catch (e) {
      console.error("bad event", e);
    }
  });
}

function bigger(a, b) {
  return BigInt(a || "0") > BigInt(b || "0") ? a : b;
}

// ---- incident list ----

function listRow(inc) {
  const p = inc.process || {};
  return el("tr", { className: "incident" },
    el("td", { className: "mono" }, fmtTime(inc.time)),
    el("td", null, severityBadge(inc.severity)),
    el("td", { className: "host" }, host(inc)),
    el("td", { className: "mono rule" }, inc.ruleId || "-"),
    el("td", { className: "title" }, el("a", { href: "#/incident/" + encodeURIComponent(inc.id) }, inc.title || "(no title)")),
    el("td", null, inc.score ? Number(inc.score).toFixed(0) : "-"),
    el("td", { className: "mono" }, p.pid ? p.pid + " " + (p.exe || p.comm || "") : "-"),
    el("td", null, String(inc.revision || 1)));
}

async function showList(params) {
  const query = {};
  for (const k of ["host", "rule", "min_severity"]) if (params.get(k)) query[k] = params.get(k);

  const form = el("form", { className: "filters" },
    el("label", null, "Host id", el("input", { name: "host", value: query.host || "" })),
    el("label", null, "Rule", el("input", { name: "rule", value: query.rule || "" })),
    el("label", null, "Min. severity", (() => {
      const s = el("select", { name: "min_severity" }, el("option", { value: "" }, "any"),
        ...["info", "low", "medium", "high", "critical"].map((v) => el("option", { value: v }, v)));
      s.value = query.min_severity || "";
      return s;
    })()),
    el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    location.hash = "#/" + (q.toString() ? "?" + q.toString() : "");
  });

  const tbody = el("tbody", { id: "incidents" });
  const table = el("table", null,
    el("thead", null, el("tr", null, ...["Time", "Severity", "Host", "Rule", "Title", "Score", "Process", "Rev."].map((h) => el("th", null, h)))),
    tbody);
  const more = el("button", { className: "more", type: "button", hidden: true }, "Older incidents");
  const empty = el("p", { className: "muted", id: "empty" }, "No incidents yet. New ones appear here as agents report them.");
  main.replaceChildren(el("h1", null, "Incidents"), form, table, empty, more);

  const rows = new Map(); // incident id -> row
  let newest = "0";
  let before = "";
  const add = (inc, top) => {
    const row = listRow(inc);
    row.dataset.id = inc.id;
    const old = rows.get(inc.id);
    if (old) old.remove();
    rows.set(inc.id, row);
    if (top) {
      row.classList.add("fresh");
      tbody.prepend(row);
    } else {
      tbody.append(row);
    }
    empty.hidden = rows.size > 0;
  };
  const page = async () => {
    const q = new URLSearchParams(query);
    q.set("limit", "100");
    if (before) q.set("before", before);
    const body = await getJSON("api/incidents?" + q.toString());
    for (const inc of body.incidents || []) {
      if (!rows.has(inc.id)) add(inc, false);
      newest = bigger(inc.cursor, newest);
    }
    before = body.nextBefore || "";
    more.hidden = !before;
  };
  more.addEventListener("click", () => page().catch(showError));
  await page();
  // A revision moves its incident to a new cursor: it replaces its row
  // and goes to the top, as the newest.
  follow(query, newest, (inc) => add(inc, true));
}

// ---- incident page ----

function fields(pairs) {
  const dl = el("dl", { className: "fields" });
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === "") continue;
    dl.append(el("dt", null, k), el("dd", null, v));
  }
  return dl;
}

function card(title, ...body) {
  return el("section", { className: "card" }, el("h2", null, title), ...body);
}

function loginLine(l) {
  let s = (l.service || "-") + " login of " + (l.user || "-");
  if (l.remoteHost) s += " from " + l.remoteHost;
  if (l.tty) s += " on " + l.tty;
  return s + " at " + fmtTime(l.time) + " (session " + (l.sessionId || 0) + ", pid " + (l.pid || 0) + ")";
}

function timeline(sigs) {
  return el("table", { id: "timeline" },
    el("thead", null, el("tr", null, ...["Time", "Severity", "Source", "Rule", "ATT&CK", "Process", "Reason", "Score"].map((h) => el("th", null, h)))),
    el("tbody", null, sigs.map((s) => el("tr", null,
      el("td", { className: "mono" }, fmtTime(s.time)),
      el("td", null, severityBadge(s.severity)),
      el("td", null, s.source || "-"),
      el("td", { className: "mono" }, s.ruleId || "-"),
      el("td", null, (s.attack && s.attack.techniqueId) || "-"),
      el("td", { className: "mono" },
        s.pid ? s.pid + " " + (s.exe || "") : s.remoteHost ? "from " + s.remoteHost : "-",
        s.object ? el("div", { className: "muted" }, s.object) : null),
      el("td", null, s.title ? el("div", null, s.title) : null, s.reason || "", s.repeats ? " (" + s.repeats + " repeats)" : ""),
      el("td", null, s.score ? Number(s.score).toFixed(0) : "-")))));
}

function tree(inc) {
  const chain = (inc.ancestors || []).slice().reverse();
  if (inc.process) chain.push(inc.process);
  if (chain.length === 0) return el("p", { className: "muted" }, "No process recorded.");
  const ul = el("ul", { className: "tree mono", id: "tree" });
  chain.forEach((p, depth) => {
    const li = el("li", null, depth > 0 ? "└─ " : "", fmtProcess(p));
    li.style.paddingLeft = depth * 1.5 + "em";
    if (p === inc.process) li.classList.add("trigger");
    ul.append(li);
  });
  return ul;
}

function actionsTrail(acts) {
  return el("table", { id: "actions" },
    el("thead", null, el("tr", null, ...["Time", "Action", "Target", "Requester", "Mode", "Result", "Detail", "Reason"].map((h) => el("th", null, h)))),
    el("tbody", null, acts.map((a) => el("tr", null,
      el("td", { className: "mono" }, fmtTime(a.time)),
      el("td", null, a.action || "-"),
      el("td", { className: "mono" }, a.target || "-"),
      el("td", null, a.requester || "-"),
      el("td", null, a.mode || "-"),
      el("td", null, (a.result || "-") + (a.dryRun ? " (dry run)" : "")),
      el("td", null, a.detail || ""),
      el("td", null, a.reason || "")))));
}

function renderIncident(inc) {
  const parts = [
    el("p", null, el("a", { href: "#/" }, "← All incidents")),
    el("h1", { id: "title" }, severityBadge(inc.severity), " ", inc.title || "(no title)"),
    card("Summary", fields([
      ["Incident", el("span", { className: "mono" }, inc.id)],
      ["Severity", severityName(inc.severity)],
      ["Host", inc.hostname ? inc.hostname + (inc.hostId ? " (" + inc.hostId + ")" : "") : inc.hostId],
      ["Rule", el("span", { className: "mono" }, inc.ruleId || "-")],
      ["ATT&CK", attack(inc.attack)],
      ["Score", inc.score ? Number(inc.score).toFixed(1) + " / 100" : ""],
      ["Time", fmtTime(inc.time)],
      ["Received", fmtTime(inc.receivedTime)],
      ["Revision", String(inc.revision || 1)],
      ["Cursor", inc.cursor],
    ]), inc.description ? el("p", { className: "description" }, inc.description) : null),
  ];
  if (inc.cause) parts.push(card("Cause", el("p", { className: "cause", id: "cause" }, inc.cause)));
  if (inc.login) parts.push(card("Login", el("p", { id: "login" }, loginLine(inc.login))));
  parts.push(card("Timeline", (inc.signals || []).length ? timeline(inc.signals) : el("p", { className: "muted" }, "No signals recorded.")));
  parts.push(card("Process tree", tree(inc)));
  if ((inc.related || []).length) {
    parts.push(card("Related processes", el("ul", { className: "tree mono" }, inc.related.map((p) => el("li", null, fmtProcess(p))))));
  }
  if ((inc.recommendedActions || []).length) {
    parts.push(card("Recommended actions", el("ol", { id: "recommended" },
      inc.recommendedActions.map((a) => el("li", null, el("strong", null, a.action || "-"), " ", el("span", { className: "mono" }, a.target || ""), a.reason ? ": " + a.reason : "")))));
  }
  parts.push(card("Actions", (inc.actions || []).length ? actionsTrail(inc.actions) : el("p", { className: "muted" }, "No actions requested.")));
  main.replaceChildren(...parts);
  document.title = (inc.title || "Incident") + " · Vigil";
}

async function showIncident(id) {
  const inc = await getJSON("api/incidents/" + encodeURIComponent(id));
  renderIncident(inc);
  // A newer revision of this incident replaces the page.
  follow({}, inc.cursor, (next) => {
    if (next.id === id) renderIncident(next);
  });
}

// ---- routing ----

function showError(e) {
  main.replaceChildren(el("p", { className: "error" }, "Error: " + (e && e.message ? e.message : String(e))),
    el("p", null, el("a", { href: "#/" }, "← All incidents")));
}

function route() {
  if (source) {
    source.close();
    source = null;
  }
  setLive("");
  document.title = "Vigil console";
  const hash = location.hash.replace(/^#/, "") || "/";
  const m = hash.match(/^\/incident\/([^?]+)$/);
  const run = m ? showIncident(decodeURIComponent(m[1])) : showList(new URLSearchParams(hash.split("?")[1] || ""));
  run.catch(showError);
}

window.addEventListener("hashchange", route);
route();
