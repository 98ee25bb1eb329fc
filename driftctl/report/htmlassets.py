"""The HTML report's stylesheet and its one small script, as constants.

The page's Content-Security-Policy allows exactly these two by their sha256 (``csp()``, computed when
the page is rendered): a changed byte in either and the browser refuses it, so they live here, apart
from any value of a document. The script only filters rows that are already in the page (by host,
resource and class) and mirrors the filter in the URL fragment (``#host=web&class=failed,corrective&res=nginx``)
so a filtered view can be bookmarked or sent; it loads nothing and writes no markup. Without it (a
viewer that blocks scripts) every row is shown and the filter form stays hidden.
"""

from __future__ import annotations

import base64
import hashlib

from driftctl.report.chart import legend_css

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:1rem 1.5rem;color:#222;background:#fff}
[hidden]{display:none!important}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.2rem;margin-top:1.8rem;border-bottom:1px solid #ddd}
h3{font-size:1.05rem;margin:1.4rem 0 .3rem}h3 .dim{font-weight:400}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border-bottom:1px solid #e5e5e5;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f6f6;white-space:nowrap}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
code,pre,time{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
time{white-space:nowrap;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;padding:.5rem;margin:.3rem 0;overflow:auto;white-space:pre;max-width:100%;max-height:28em;
box-sizing:border-box}
.ok,.c-insync{color:#2e7d32}.warn,.c-changed,.c-pending{color:#b26a00}.bad,.c-failed,.c-unreachable{color:#c62828;
font-weight:600}.c-corrective{color:#c62828}.c-both{color:#8e44ad}.c-unmanaged{color:#2f6fc9}
.dim,.c-ignored,.c-skipped{color:#777}
.ins{color:#2e7d32}.del{color:#c62828}.hunk{color:#00838f}
.legend span{display:inline-block;margin-right:1rem}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:-1px}
svg{max-width:100%;height:auto}svg text{font-size:11px;fill:#555}
ul.changes{margin:0;padding-left:1.1rem}
table.res{table-layout:fixed}
section.host{content-visibility:auto;contain-intrinsic-size:auto 400px;scroll-margin-top:8rem}
col.c-res{width:22%}col.c-cls{width:8.5rem}col.c-since{width:9rem}col.c-runs{width:3rem}col.c-past{width:16%}
table.res td{overflow-wrap:anywhere}table.res td:nth-child(2),table.res td:nth-child(3){overflow-wrap:normal}
table.res td.changes{min-width:0}
.src{display:block;font-size:12px;color:#777}
details>summary{cursor:pointer;color:#37474f}
ol.events{margin:.2rem 0;padding-left:1.2rem;font-size:13px}ol.events li{margin:.15rem 0}
.ev{font-weight:600}.ev-drift-found{color:#c62828}.ev-drift-resolved{color:#2e7d32}.ev-applied{color:#00897b}
.ev-failed,.ev-host-failed,.ev-unreachable{color:#c62828}
form.filters{position:sticky;top:0;z-index:1;background:#fafafa;border:1px solid #ddd;border-radius:4px;
padding:.5rem .7rem;margin:.5rem 0}
form.filters label{margin-right:.8rem;white-space:nowrap}
form.filters input[type=search]{width:14rem;font:inherit;padding:.1rem .3rem}
form.filters fieldset{border:0;padding:0;margin:.4rem 0 0}
form.filters legend{float:left;margin-right:.6rem;font-weight:600}
form.filters .presets a{margin-right:.6rem}
.steps li{margin-bottom:.6rem}.steps pre{margin:.2rem 0}
"""


SCRIPT = r"""(function () {
"use strict";
var form = document.getElementById("filters");
if (!form) { return; }
var hostBox = form.elements.namedItem("host"), resBox = form.elements.namedItem("res");
var boxes = Array.prototype.slice.call(form.querySelectorAll("input[name=c]"));
var sections = Array.prototype.slice.call(document.querySelectorAll("section.host"));
var hostRows = Array.prototype.slice.call(document.querySelectorAll("tr[data-host-row]"));
var shown = document.getElementById("shown");
var defaults = (form.getAttribute("data-default") || "").split(",");
var rows = sections.map(function (sec) {
  return Array.prototype.slice.call(sec.querySelectorAll("tr[data-c]")).map(function (tr) {
    return {tr: tr, c: tr.getAttribute("data-c"), r: (tr.getAttribute("data-r") || "").toLowerCase()};
  });
});
function terms(text) {
  return text.toLowerCase().split(/[\s,]+/).filter(function (t) { return t.length > 0; });
}
function matches(words, text) {
  if (!words.length) { return true; }
  for (var i = 0; i < words.length; i++) { if (text.indexOf(words[i]) >= 0) { return true; } }
  return false;
}
function chosen() {
  return boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; });
}
function fragment() {
  var parts = [], classes = chosen();
  if (hostBox.value) { parts.push("host=" + encodeURIComponent(hostBox.value)); }
  if (classes.join(",") !== defaults.join(",")) {
    parts.push("class=" + (classes.length === boxes.length ? "all" : classes.join(",")));
  }
  if (resBox.value) { parts.push("res=" + encodeURIComponent(resBox.value)); }
  return parts.join("&");
}
function apply() {
  var hostWords = terms(hostBox.value), resWords = terms(resBox.value), on = {}, total = 0, seen = 0;
  var visibleHosts = {}, hostCount = 0;
  chosen().forEach(function (c) { on[c] = true; });
  sections.forEach(function (sec, i) {
    var name = sec.getAttribute("data-host") || "", hostOk = matches(hostWords, name.toLowerCase()), n = 0;
    rows[i].forEach(function (row) {
      var ok = hostOk && on[row.c] === true && matches(resWords, row.r);
      row.tr.hidden = !ok;
      if (ok) { n++; }
      total++;
    });
    sec.hidden = n === 0;
    if (n) { visibleHosts[name] = true; hostCount++; }
    seen += n;
  });
  hostRows.forEach(function (tr) { tr.hidden = visibleHosts[tr.getAttribute("data-host-row")] !== true; });
  shown.textContent = "Showing " + seen + " of " + total + " rows, on " + hostCount + " of " +
    sections.length + " hosts.";
}
function read() {
  var hash = window.location.hash.replace(/^#/, "");
  if (hash.indexOf("=") < 0) { return false; }
  var params = {};
  hash.split("&").forEach(function (kv) {
    var at = kv.indexOf("=");
    if (at > 0) {
      try { params[kv.slice(0, at)] = decodeURIComponent(kv.slice(at + 1).replace(/\+/g, " ")); }
      catch (err) { params[kv.slice(0, at)] = ""; }
    }
  });
  hostBox.value = params.host || "";
  resBox.value = params.res || "";
  var all = boxes.map(function (b) { return b.value; }), asked = params["class"];
  var classes = asked === undefined ? defaults : asked === "all" ? all :
    asked.split(",").filter(function (c) { return all.indexOf(c) >= 0; });
  if (asked && !classes.length) { classes = defaults; }  /* only unknown names: as if none were given */
  boxes.forEach(function (b) { b.checked = classes.indexOf(b.value) >= 0; });
  return true;
}
function changed() {
  apply();
  var frag = fragment(), url = window.location.href.split("#")[0] + (frag ? "#" + frag : "");
  try { window.history.replaceState(null, "", url); } catch (err) { /* a file: URL may refuse; the view filters */ }
}
form.hidden = false;
form.addEventListener("input", changed);
form.addEventListener("change", changed);
form.addEventListener("submit", function (ev) { ev.preventDefault(); });
window.addEventListener("hashchange", function () { if (read()) { apply(); } });
read();
apply();
})();
"""


def sha256(text: str) -> str:
    """The CSP source expression that allows exactly ``text`` inline: ``'sha256-BASE64'``."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def stylesheet() -> str:
    return CSS + legend_css() + "\n"


def csp(style: str, script: str | None) -> str:
    """Nothing by default; the one stylesheet and the one script by hash; no form target, no base URL.
    (frame-ancestors cannot be set from a <meta> tag; a web server serving the page can add it.)"""
    policy = f"default-src 'none'; style-src {sha256(style)}; "
    if script is not None:
        policy += f"script-src {sha256(script)}; "
    return policy + "base-uri 'none'; form-action 'none'"
