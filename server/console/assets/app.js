// Vigil console: the incident list with live updates, the incident page
// (with its recommended actions to run and its triage) and the fleet page.
// Every piece of incident and host data reaches the page as a text node
// (see el): process names, arguments and file paths are chosen by whoever
// runs on the host, so none of it is ever parsed as HTML.
"use strict";

const main = document.getElementById("main");
const live = document.getElementById("live");
let stream = null; // the AbortController of the current view's event stream
let timer = null; // the refresh timer of the current view
let session = { tokens: false }; // GET api/session: does the API need a token, whose is ours

// The bearer token lives in sessionStorage: it is gone when the tab closes.
const tokenKey = "vigil.token";

function token() {
  return sessionStorage.getItem(tokenKey) || "";
}

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

// ApiError is an answer of the API other than 2xx.
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra || {});
  if (token()) h.Authorization = "Bearer " + token();
  return h;
}

// api calls the console's API. A body is sent as JSON with the header the
// server requires of every write (it keeps other sites' pages from
// posting here).
async function api(url, body) {
  const opts = { headers: headers() };
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.headers["Vigil-Console"] = "1";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(url, opts);
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, answer.error || r.status + " " + r.statusText);
  return answer;
}

function setLive(state) {
  live.className = "live " + state;
  live.textContent = state === "on" ? "live" : state === "off" ? "reconnecting…" : "";
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// follow reads the event stream after cursor and hands every incident to
// fn, reconnecting from the last event's id when the stream breaks. It
// reads the stream with fetch rather than EventSource, which cannot send
// the Authorization header.
function follow(query, after, fn) {
  stopFollowing();
  const ctl = new AbortController();
  stream = ctl;
  let last = after || "0";
  let retry = 2000;
  const dispatch = (block) => {
    let id = null;
    let type = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const c = line.indexOf(":");
      const field = c < 0 ? line : line.slice(0, c);
      let v = c < 0 ? "" : line.slice(c + 1);
      if (v.startsWith(" ")) v = v.slice(1);
      if (field === "id") id = v;
      else if (field === "event") type = v;
      else if (field === "data") data.push(v);
      else if (field === "retry" && /^\d+$/.test(v)) retry = Number(v);
    }
    if (id !== null) last = id;
    if (type !== "incident" || data.length === 0) return;
    try {
      fn(JSON.parse(data.join("\n")));
    } catch (e) {
      console.error("bad event", e);
    }
  };
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const q = new URLSearchParams(query);
        q.set("after", last);
        const r = await fetch("api/events?" + q.toString(), { headers: headers({ Accept: "text/event-stream" }), signal: ctl.signal });
        if (r.status === 401 || r.status === 403) {
          const answer = await r.json().catch(() => ({}));
          setLive("");
          showError(new ApiError(r.status, answer.error || r.statusText));
          return;
        }
        if (!r.ok || !r.body) throw new Error("event stream: " + r.status);
        setLive("on");
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            dispatch(buf.slice(0, i));
            buf = buf.slice(i + 2);
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      if (ctl.signal.aborted) return;
      setLive("off");
      await sleep(retry);
    }
  })();
}

function stopFollowing() {
  if (stream) stream.abort();
  stream = null;
}

function bigger(a, b) {
  return BigInt(a || "0") > BigInt(b || "0") ? a : b;
}

// ---- incident list ----

function listRow(inc) {
  const p = inc.process || {};
  return el("tr", { className: "incident" },
    el("td", { className: "mono time" }, fmtTime(inc.time)),
    el("td", null, severityBadge(inc.severity)),
    el("td", { className: "host" }, host(inc)),
    el("td", { className: "mono rule" }, inc.ruleId || "-"),
    el("td", { className: "title" }, el("a", { href: "#/incident/" + encodeURIComponent(inc.id) }, inc.title || "(no title)")),
    el("td", null, inc.score ? Number(inc.score).toFixed(0) : "-"),
    el("td", { className: "mono" }, p.pid ? p.pid + " " + (p.exe || p.comm || "") : "-"),
    el("td", null, String(inc.revision || 1)),
    el("td", { className: "triage" }, triageWords(inc.triage)));
}

function enumWord(v, prefix, def) {
  return String(v || def).replace(prefix, "").toLowerCase();
}

// triageWords is "status" or "status, label" when labelled.
function triageWords(tr) {
  const t = tr || {};
  const status = enumWord(t.status, /^TRIAGE_STATUS_/, "TRIAGE_STATUS_OPEN");
  const label = enumWord(t.label, /^LABEL_/, "LABEL_UNLABELLED");
  return label === "unlabelled" || label === "unspecified" ? status : status + ", " + label;
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
    el("thead", null, el("tr", null, ...["Time", "Severity", "Host", "Rule", "Title", "Score", "Process", "Rev.", "Triage"].map((h) => el("th", null, h)))),
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
    const body = await api("api/incidents?" + q.toString());
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
      el("td", { className: "mono time" }, fmtTime(s.time)),
      el("td", null, severityBadge(s.severity)),
      el("td", null, s.source || "-"),
      el("td", { className: "mono rule" }, s.ruleId || "-"),
      el("td", null, (s.attack && s.attack.techniqueId) || "-"),
      el("td", { className: "mono" },
        s.pid ? s.pid + " " + (s.exe || "") : s.remoteHost ? "from " + s.remoteHost : "-",
        s.object ? el("div", { className: "muted" }, s.object) : null),
      el("td", null, s.title ? el("div", null, s.title) : null, s.reason || "", s.repeats ? " (" + s.repeats + (s.repeats === 1 ? " repeat)" : " repeats)") : ""),
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

function actionsTrail(acts, id) {
  return el("table", { id: id || "actions" },
    el("thead", null, el("tr", null, ...["Time", "Action", "Target", "Requester", "Mode", "Result", "Detail", "Reason"].map((h) => el("th", null, h)))),
    el("tbody", null, acts.map((a) => el("tr", null,
      el("td", { className: "mono time" }, fmtTime(a.time)),
      el("td", null, a.action || "-"),
      el("td", { className: "mono" }, a.target || "-"),
      el("td", null, a.requester || "-"),
      el("td", null, a.mode || "-"),
      el("td", null, (a.result || "-") + (a.dryRun ? " (dry run)" : "")),
      el("td", null, a.detail || ""),
      el("td", null, a.reason || "")))));
}


// recordView shows the record an agent answered an action with.
function recordView(rec) {
  const result = rec.result || "-";
  return el("div", { className: "result result-" + result.replace(/[^a-z-]/g, "") },
    el("strong", null, (rec.action || "-") + " " + (rec.target || "") + ": " + result + (rec.dryRun ? " (dry run)" : "")),
    rec.detail ? el("div", { className: "detail" }, rec.detail) : null,
    el("div", { className: "muted" }, "record " + (rec.id || "-") + ", requester " + (rec.requester || "-") +
      ", mode " + (rec.mode || "-") + ", at " + fmtTime(rec.time)));
}

// recommended lists the incident's recommended actions, each with a
// button to try it as a dry run and one to run it; running it for real
// takes a second click on the same button.
function recommended(inc, view) {
  return el("ol", { id: "recommended" }, inc.recommendedActions.map((a, i) => {
    const dry = el("button", { type: "button", className: "dry-run", title: "the agent checks the action and says what it would do" }, "Dry run");
    const run = el("button", { type: "button", className: "run danger" }, "Run " + (a.action || ""));
    dry.dataset.index = run.dataset.index = String(i);
    dry.addEventListener("click", () => view.run(a, true, dry));
    let armed = null;
    run.addEventListener("click", () => {
      if (!armed) {
        run.textContent = "Confirm: " + (a.action || "") + " " + (a.target || "");
        run.classList.add("armed");
        armed = setTimeout(() => {
          armed = null;
          run.textContent = "Run " + (a.action || "");
          run.classList.remove("armed");
        }, 5000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      run.textContent = "Run " + (a.action || "");
      run.classList.remove("armed");
      view.run(a, false, run);
    });
    return el("li", null, el("strong", null, a.action || "-"), " ", el("span", { className: "mono" }, a.target || ""),
      a.reason ? ": " + a.reason : "", " ", el("span", { className: "buttons" }, dry, " ", run));
  }));
}

// triageView shows the incident's status, label and notes.
function triageView(inc) {
  const t = inc.triage || {};
  const label = enumWord(t.label, /^LABEL_/, "LABEL_UNLABELLED");
  return el("div", { id: "triage" },
    fields([
      ["Status", enumWord(t.status, /^TRIAGE_STATUS_/, "TRIAGE_STATUS_OPEN")],
      ["Label", label + (t.labelAuthor ? " by " + t.labelAuthor : "") + (t.labelTime ? " at " + fmtTime(t.labelTime) : "")],
      ["Updated", t.updatedTime ? fmtTime(t.updatedTime) : ""],
    ]),
    (t.notes || []).length ? el("ul", { className: "notes", id: "notes" }, t.notes.map((n) =>
      el("li", null, el("span", { className: "muted" }, fmtTime(n.time) + " " + (n.author || "-") + ": "), n.text || ""))) : null);
}

function selectOf(name, options) {
  return el("select", { name }, options.map(([v, text]) => el("option", { value: v }, text)));
}

// triageForm changes the status, label and notes of incident id; done
// receives the incident as stored after the change.
function triageForm(id, done) {
  const status = selectOf("status", [["", "keep status"], ["TRIAGE_STATUS_OPEN", "open"],
    ["TRIAGE_STATUS_ACKNOWLEDGED", "acknowledged"], ["TRIAGE_STATUS_RESOLVED", "resolved"]]);
  const label = selectOf("label", [["", "keep label"], ["LABEL_BENIGN", "benign"],
    ["LABEL_MALICIOUS", "malicious"], ["LABEL_UNLABELLED", "unlabelled"]]);
  const note = el("textarea", { name: "note", rows: 2, maxLength: 4096, placeholder: "note (optional)" });
  const author = el("input", { name: "author", placeholder: "your name", value: sessionStorage.getItem("vigil.author") || "" });
  const msg = el("span", { id: "triage-msg", className: "muted" });
  const save = el("button", { type: "submit" }, "Save");
  const form = el("form", { id: "triage-form", className: "triage-form" },
    el("label", null, "Status", status), el("label", null, "Label", label),
    el("label", { className: "wide" }, "Note", note), el("label", null, "Author", author), save, msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {};
    if (status.value) body.status = status.value;
    if (label.value) body.label = label.value;
    if (note.value) body.note = note.value;
    if (author.value) {
      body.author = author.value;
      sessionStorage.setItem("vigil.author", author.value);
    }
    msg.className = "muted";
    msg.textContent = "Saving…";
    save.disabled = true;
    try {
      const inc = await api("api/incidents/" + encodeURIComponent(id) + "/triage", body);
      status.value = label.value = note.value = "";
      msg.textContent = "Saved at " + fmtTime(inc.triage && inc.triage.updatedTime) + ".";
      done(inc);
    } catch (e) {
      msg.className = "error";
      msg.textContent = "Not saved: " + e.message;
    } finally {
      save.disabled = false;
    }
  });
  return form;
}

// incidentView is the incident page of one incident: render shows a
// revision; the action results and the triage form stay across renders.
function incidentView(id) {
  const results = el("div", { id: "action-results" });
  const stored = el("div", { id: "stored-actions" }, el("p", { className: "muted" }, "Loading…"));
  const view = { inc: null };
  const form = triageForm(id, (inc) => view.render(inc));

  view.refreshStored = async () => {
    try {
      const answer = await api("api/incidents/" + encodeURIComponent(id) + "/actions");
      const recs = (answer.actions || []).map((a) => a.record || {});
      stored.replaceChildren(recs.length ? actionsTrail(recs, "server-actions") :
        el("p", { className: "muted" }, "None requested through the server yet."));
    } catch (e) {
      stored.replaceChildren(el("p", { className: "error" }, "Cannot list them: " + e.message));
    }
  };

  view.run = async (a, dryRun, button) => {
    button.disabled = true;
    const pending = el("div", { className: "result pending" }, (dryRun ? "Dry run of " : "Running ") + a.action + " " + a.target + "…");
    results.prepend(pending);
    try {
      const rec = await api("api/incidents/" + encodeURIComponent(id) + "/actions", { action: a.action, target: a.target, dryRun });
      pending.replaceWith(recordView(rec));
    } catch (e) {
      pending.replaceWith(el("div", { className: "result result-error" },
        el("strong", null, a.action + " " + a.target + ": not run"), el("div", { className: "detail" }, e.message)));
    } finally {
      button.disabled = false;
    }
    view.refreshStored();
  };

  view.render = (inc) => {
    view.inc = inc;
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
      parts.push(card("Recommended actions", recommended(inc, view), results));
    }
    parts.push(card("Audit trail on the host", (inc.actions || []).length ? actionsTrail(inc.actions) : el("p", { className: "muted" }, "No actions recorded by the agent.")));
    parts.push(card("Actions requested through the server", stored));
    parts.push(card("Triage", triageView(inc), form));
    main.replaceChildren(...parts);
    document.title = (inc.title || "Incident") + " · Vigil";
  };
  return view;
}

async function showIncident(id) {
  const inc = await api("api/incidents/" + encodeURIComponent(id));
  const view = incidentView(id);
  view.render(inc);
  view.refreshStored();
  // A newer revision or triage of this incident replaces the page.
  follow({}, inc.cursor, (next) => {
    if (next.id === id) view.render(next);
  });
}

// ---- fleet page ----

function fmtBytes(n) {
  const v = Number(n || 0);
  if (v >= 1 << 30) return (v / (1 << 30)).toFixed(1) + " GiB";
  if (v >= 1 << 20) return (v / (1 << 20)).toFixed(1) + " MiB";
  if (v >= 1 << 10) return (v / (1 << 10)).toFixed(1) + " KiB";
  return v + " B";
}

// losses lists the events lost per family, "none" when nothing was lost.
function losses(hb) {
  const lost = (hb && hb.eventsLost) || {};
  const families = Object.keys(lost).sort();
  if (families.length === 0) return hb ? "none" : "-";
  return el("ul", { className: "losses" }, families.map((f) =>
    el("li", { className: Number(lost[f]) > 0 ? "lost" : "" }, f + ": " + lost[f])));
}

function fleetRow(a) {
  const hello = a.hello || {};
  const hb = a.lastHeartbeat;
  const conn = a.connected ? "connected since " + fmtTime(a.connectedAt) : "disconnected";
  return el("tr", { className: "agent" },
    el("td", { className: "host" }, hello.hostname || "-"),
    el("td", { className: "mono" }, a.hostId),
    el("td", null, hello.agentVersion || "-"),
    el("td", { className: "mono" }, hello.kernelRelease || "-"),
    el("td", null, conn, el("div", { className: "muted" }, "last seen " + fmtTime(a.lastSeen)), a.peer ? el("div", { className: "muted mono" }, a.peer) : null),
    el("td", null, el("span", { className: "health health-" + String(a.health || "").replace(/[^a-z]/g, "") }, a.health || "-"),
      el("div", { className: "muted" }, a.healthDetail || "")),
    el("td", null, hb ? String(hb.eventsTotal || 0) : "-"),
    el("td", null, losses(hb)),
    el("td", null, hb ? fmtBytes(hb.rssBytes) : "-"),
    el("td", null, hb ? String(hb.pendingIncidents || 0) : "-"),
    el("td", { className: "caps" }, (hello.capabilities || []).join(", ")));
}

async function showFleet() {
  const tbody = el("tbody", { id: "fleet" });
  const empty = el("p", { className: "muted", id: "fleet-empty", hidden: true }, "No agent has connected since the server started.");
  const stamp = el("p", { className: "muted" });
  main.replaceChildren(el("h1", null, "Fleet"),
    el("table", null, el("thead", null, el("tr", null, ...["Host", "Host id", "Version", "Kernel", "Connection", "Health",
      "Events", "Lost events", "Memory", "Pending", "Sensors"].map((h) => el("th", null, h)))), tbody),
    empty, stamp);
  document.title = "Fleet · Vigil";
  const load = async () => {
    const answer = await api("api/fleet");
    const agents = answer.agents || [];
    tbody.replaceChildren(...agents.map(fleetRow));
    empty.hidden = agents.length > 0;
    stamp.textContent = "Updated " + fmtTime(new Date().toISOString()) + "; refreshed every 5 s.";
  };
  await load();
  timer = setInterval(() => load().catch(showError), 5000);
}

// ---- token and routing ----

const tokenForm = document.getElementById("token-form");
const tokenInput = document.getElementById("token");
const whoami = document.getElementById("whoami");

// refreshSession asks whether the API needs a token and whose ours is.
async function refreshSession() {
  try {
    session = await api("api/session");
    whoami.className = "whoami";
    whoami.textContent = !session.tokens ? "no token needed" : session.name ? session.name + " (" + session.role + ")" : "token needed";
  } catch (e) {
    session = { tokens: true };
    whoami.className = "whoami error";
    whoami.textContent = e.status === 401 ? "unknown token" : "session: " + e.message;
  }
  tokenForm.classList.toggle("needed", !!session.tokens && !session.name);
}

tokenForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const v = tokenInput.value.trim();
  if (v) sessionStorage.setItem(tokenKey, v);
  tokenInput.value = "";
  await refreshSession();
  route();
});

document.getElementById("token-forget").addEventListener("click", async () => {
  sessionStorage.removeItem(tokenKey);
  await refreshSession();
  route();
});

function showError(e) {
  stopFollowing();
  const parts = [el("p", { className: "error", id: "error" }, "Error: " + (e && e.message ? e.message : String(e)))];
  if (e && e.status === 401) {
    parts.push(el("p", { id: "need-token" }, "This server needs a bearer token: paste one in the box at the top right (it is kept in this tab only)."));
    tokenInput.focus();
  } else if (e && e.status === 403) {
    parts.push(el("p", null, "Your token's role does not allow this; ask for a token with a stronger role."));
  }
  parts.push(el("p", null, el("a", { href: "#/" }, "← All incidents")));
  main.replaceChildren(...parts);
}

function route() {
  stopFollowing();
  if (timer) {
    clearInterval(timer);
    timer = null;
  }
  setLive("");
  document.title = "Vigil console";
  // Nothing of the previous view stays clickable while the next one loads.
  main.replaceChildren(el("p", { className: "muted" }, "Loading…"));
  const hash = location.hash.replace(/^#/, "") || "/";
  const m = hash.match(/^\/incident\/([^?]+)$/);
  let run;
  if (m) run = showIncident(decodeURIComponent(m[1]));
  else if (hash === "/fleet") run = showFleet();
  else run = showList(new URLSearchParams(hash.split("?")[1] || ""));
  run.catch(showError);
}

window.addEventListener("hashchange", route);
refreshSession().then(route);
