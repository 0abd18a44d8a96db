"use strict";
// Renders the comparison from the JSON data element. Everything from the data goes into
// the page through textContent or element attributes set by property, never as markup.
var ERRORS = [];
window.onerror = function (message, source, line) {
  ERRORS.push(String(message) + " (line " + line + ")");
  var out = document.getElementById("selftest");
  if (out && location.hash === "#selftest") {
    out.hidden = false;
    out.textContent = "error: " + ERRORS.join("; ");
  }
  return false;
};

var DATA = JSON.parse(document.getElementById("data").textContent);
var KINDS = ["imap", "pop3", "smtp", "cross"];
var STATUSES = ["PASS", "FAIL", "SKIP", "XFAIL", "XPASS"];
var STATUS_TEXT = {
  PASS: "pass", FAIL: "fail", SKIP: "skipped", XFAIL: "expected failure",
  XPASS: "unexpected pass (listed as an expected failure)"
};

function el(tag, attrs, text) {
  var e = document.createElement(tag);
  if (attrs) {
    Object.keys(attrs).forEach(function (k) {
      if (k === "className") { e.className = attrs[k]; } else { e.setAttribute(k, attrs[k]); }
    });
  }
  if (text !== undefined && text !== null) { e.textContent = String(text); }
  return e;
}

function checkbox(container, name, value, label) {
  var l = el("label");
  var box = el("input", { type: "checkbox", name: name, value: value });
  box.checked = true;
  box.addEventListener("change", applyFilters);
  l.appendChild(box);
  l.appendChild(document.createTextNode(" " + label));
  container.appendChild(l);
  return box;
}

function buildFilters() {
  var kinds = document.getElementById("kinds");
  KINDS.forEach(function (k) {
    var n = DATA.rows.filter(function (r) { return r.kind === k; }).length;
    checkbox(kinds, "kind", k, k + " (" + n + ")");
  });
  var statuses = document.getElementById("statuses");
  STATUSES.forEach(function (s) {
    var n = 0;
    DATA.rows.forEach(function (r) { r.cells.forEach(function (c) { if (c.status === s) { n++; } }); });
    checkbox(statuses, "status", s, s + " (" + n + ")");
  });
  document.getElementById("only-disagree").addEventListener("change", applyFilters);
}

function buildGrid() {
  var head = document.querySelector("#grid thead");
  var tr = el("tr");
  tr.appendChild(el("th", null, "scenario"));
  tr.appendChild(el("th", null, "protocol"));
  DATA.servers.forEach(function (s) { tr.appendChild(el("th", null, s)); });
  tr.appendChild(el("th", { title: "servers disagree" }, "\u2260"));
  head.appendChild(tr);
  var body = document.querySelector("#grid tbody");
  DATA.rows.forEach(function (row, ri) {
    var r = el("tr", { "data-row": String(ri), "data-kind": row.kind });
    r.appendChild(el("td", { className: "id", title: row.title + "\n" + row.file }, row.id));
    r.appendChild(el("td", null, row.kind));
    row.cells.forEach(function (cell, ci) {
      var td = el("td", {
        className: "cell st-" + cell.status, tabindex: "0",
        "data-row": String(ri), "data-cell": String(ci),
        title: STATUS_TEXT[cell.status] + (cell.reason ? ": " + cell.reason : "")
      }, cell.status);
      if (cell.status === "FAIL" || cell.status === "XPASS") {
        var what = cell.rules.concat(cell.problems.map(function (p) { return p.split(" ")[0]; }));
        if (what.length) { td.appendChild(el("span", { className: "rules" }, what.join(", "))); }
      }
      td.addEventListener("click", function () { showCell(ri, ci); });
      td.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); showCell(ri, ci); }
      });
      r.appendChild(td);
    });
    r.appendChild(el("td", { className: "ne" }, row.disagree ? "\u2260" : ""));
    body.appendChild(r);
  });
}

function checked(name) {
  var out = {};
  document.querySelectorAll("input[name=" + name + "]").forEach(function (b) { out[b.value] = b.checked; });
  return out;
}

function applyFilters() {
  var kinds = checked("kind");
  var statuses = checked("status");
  var onlyDisagree = document.getElementById("only-disagree").checked;
  var shown = 0;
  document.querySelectorAll("#grid tbody tr").forEach(function (tr) {
    var row = DATA.rows[Number(tr.getAttribute("data-row"))];
    var visible = kinds[row.kind] !== false &&
      row.cells.some(function (c) { return statuses[c.status] !== false; }) &&
      (!onlyDisagree || row.disagree);
    tr.hidden = !visible;
    if (visible) { shown++; }
  });
  document.getElementById("shown").textContent = shown + " of " + DATA.rows.length + " scenarios shown";
}

function diffBlock(text) {
  var pre = el("pre", { className: "diff" });
  text.split("\n").forEach(function (line, i, all) {
    if (i === all.length - 1 && line === "") { return; }
    var cls = "ctx";
    if (line.indexOf("+++") === 0 || line.indexOf("---") === 0) { cls = "hunk"; }
    else if (line.indexOf("@@") === 0) { cls = "hunk"; }
    else if (line.charAt(0) === "+") { cls = "add"; }
    else if (line.charAt(0) === "-") { cls = "del"; }
    pre.appendChild(el("span", { className: cls }, line));
  });
  return pre;
}

function showCell(ri, ci) {
  var row = DATA.rows[ri];
  var cell = row.cells[ci];
  var server = DATA.servers[ci];
  document.querySelectorAll("#grid td.selected").forEach(function (td) { td.classList.remove("selected"); });
  var td = document.querySelector('#grid td[data-row="' + ri + '"][data-cell="' + ci + '"]');
  if (td) { td.classList.add("selected"); }
  var d = document.getElementById("detail");
  d.textContent = "";
  d.hidden = false;
  d.appendChild(el("h2", null, row.id + " on " + server));
  d.appendChild(el("p", null, row.title));
  d.appendChild(el("p", { className: "st-" + cell.status },
    STATUS_TEXT[cell.status] + (cell.reason ? ": " + cell.reason : "")));
  if (cell.rules.length) {
    d.appendChild(el("h3", null, "Rules broken"));
    d.appendChild(el("p", { className: "rules" }, cell.rules.join(", ")));
  }
  if (cell.details.trim()) {
    d.appendChild(el("h3", null, "Violations and problems"));
    d.appendChild(el("pre", { className: "details" }, cell.details));
  }
  d.appendChild(el("h3", null, "Diffs against the other servers (script lines, normalized)"));
  var any = false;
  row.diffs.forEach(function (df) {
    if (df.a !== ci && df.b !== ci) { return; }
    any = true;
    var other = df.a === ci ? df.b : df.a;
    d.appendChild(el("p", null, "vs " + DATA.servers[other] + " (" + row.cells[other].status + ")"));
    d.appendChild(diffBlock(df.diff));
  });
  if (!any) { d.appendChild(el("p", { className: "nodiff" }, "Same as every other server that ran it.")); }
  d.appendChild(el("h3", null, "Transcript (normalized; setup lines marked)"));
  d.appendChild(el("pre", { className: "transcript" }, cell.transcript || "(no transcript: not run)"));
}

function setAll(name, value) {
  document.querySelectorAll("input[name=" + name + "]").forEach(function (b) { b.checked = value; });
}

function visibleRows() {
  return Array.prototype.filter.call(document.querySelectorAll("#grid tbody tr"), function (tr) { return !tr.hidden; });
}

// Clicks through the page and reports "ok" or what went wrong (for the headless test).
function selftest() {
  var out = document.getElementById("selftest");
  out.hidden = false;
  try {
    var rows = document.querySelectorAll("#grid tbody tr");
    if (rows.length !== DATA.rows.length) { throw new Error("grid has " + rows.length + " rows, data " + DATA.rows.length); }
    // The first FAIL cell that has a diff; else the first cell with a diff; else the first.
    var hasDiff = function (td) {
      var ri = Number(td.getAttribute("data-row")), ci = Number(td.getAttribute("data-cell"));
      return DATA.rows[ri].diffs.some(function (df) { return df.a === ci || df.b === ci; });
    };
    var cells = document.querySelectorAll("#grid td.cell");
    var pick = Array.prototype.find.call(document.querySelectorAll("#grid td.st-FAIL"), hasDiff) ||
      Array.prototype.find.call(cells, hasDiff) || cells[0];
    if (!pick) { throw new Error("the grid has no cells"); }
    pick.click();
    var ri = Number(pick.getAttribute("data-row"));
    if (!DATA.rows[ri].cells[Number(pick.getAttribute("data-cell"))].transcript) {
      throw new Error("the picked cell has no transcript");
    }
    var transcript = document.querySelector("#detail pre.transcript");
    if (!transcript || !transcript.textContent.trim()) { throw new Error("the detail panel shows no transcript"); }
    var diff = document.querySelector("#detail pre.diff");
    if (hasDiff(pick) && (!diff || diff.textContent.indexOf("@@") < 0)) { throw new Error("the detail panel shows no diff"); }
    if (!document.querySelector("#grid td.selected")) { throw new Error("the clicked cell is not marked"); }
    // Status filter: FAIL only leaves rows with a FAIL cell.
    setAll("status", false);
    document.querySelector("input[name=status][value=FAIL]").checked = true;
    applyFilters();
    var shown = visibleRows();
    shown.forEach(function (tr) {
      if (!tr.querySelector("td.st-FAIL")) { throw new Error("the FAIL filter shows a row without FAIL"); }
    });
    var withoutFail = DATA.rows.filter(function (r) { return !r.cells.some(function (c) { return c.status === "FAIL"; }); }).length;
    if (rows.length - shown.length !== withoutFail) { throw new Error("the FAIL filter hid the wrong rows"); }
    setAll("status", true);
    // Protocol filter: unticking a row's protocol hides that row.
    var kind = DATA.rows[0].kind;
    document.querySelector("input[name=kind][value=" + kind + "]").checked = false;
    applyFilters();
    if (!rows[0].hidden) { throw new Error("the protocol filter did not hide a " + kind + " row"); }
    setAll("kind", true);
    // "Only where servers disagree" leaves exactly the disagreeing rows.
    var only = document.getElementById("only-disagree");
    only.checked = true;
    applyFilters();
    var disagreeing = DATA.rows.filter(function (r) { return r.disagree; }).length;
    if (visibleRows().length !== disagreeing) { throw new Error("the disagreement filter shows the wrong rows"); }
    only.checked = false;
    applyFilters();
    if (visibleRows().length !== rows.length) { throw new Error("resetting the filters did not show every row"); }
    if (ERRORS.length) { throw new Error(ERRORS.join("; ")); }
    out.textContent = "ok";
  } catch (e) {
    out.textContent = "error: " + (e && e.message ? e.message : String(e));
  }
}

document.getElementById("summary").textContent = DATA.summary;
if (DATA.command) {
  var cmd = document.getElementById("command");
  cmd.textContent = DATA.command;
  cmd.hidden = false;
}
buildFilters();
buildGrid();
applyFilters();
if (location.hash === "#selftest") { selftest(); }
