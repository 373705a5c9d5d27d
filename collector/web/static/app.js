// driftwatch web console: small progressive enhancements; every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Bulk resolve: say how many rows are selected on the button, and ask before sending.
  var form = document.getElementById("resolve");
  if (!form) { return; }
  var button = form.querySelector("fieldset button[type=submit]");
  var boxes = form.querySelectorAll("input[name=group]");
  function selected() {
    var n = 0;
    boxes.forEach(function (b) { if (b.checked) { n += 1; } });
    return n;
  }
  function update() {
    if (button) { button.textContent = "Resolve selected (" + selected() + ")"; }
  }
  boxes.forEach(function (b) { b.addEventListener("change", update); });
  update();
  form.addEventListener("submit", function (event) {
    if (selected() === 0) {
      event.preventDefault();
      window.alert("Select at least one row to resolve.");
    }
  });
});

// Live banner on the inbox: new drift, and open drift that changed again, is counted
// ("N new, M changed") instead of moving rows under the pointer; a click reloads. The
// stream is the API's, with the session's cookie, after the cursor the page was rendered
// at (data-stream), so nothing that changed before it connected is missed.
document.addEventListener("DOMContentLoaded", function () {
  var banner = document.getElementById("live");
  if (!banner || typeof window.EventSource === "undefined") { return; }
  var button = document.getElementById("live-reload");
  var fresh = {};
  var changed = {};
  var source = new window.EventSource(banner.getAttribute("data-stream"));
  function count(set) { return Object.keys(set).length; }
  function show(text) {
    button.textContent = text;
    banner.hidden = false;
  }
  source.addEventListener("drift", function (event) {
    var change;
    try { change = JSON.parse(event.data); } catch (e) { return; }
    if (change.to !== "open") { return; }
    if (change.kind === "changed") {
      if (!fresh[change.drift_id]) { changed[change.drift_id] = true; }
    } else {
      fresh[change.drift_id] = true;
      delete changed[change.drift_id];
    }
    var parts = [];
    if (count(fresh) > 0) { parts.push(count(fresh) + " new"); }
    if (count(changed) > 0) { parts.push(count(changed) + " changed"); }
    show(parts.join(", ") + ": reload to see " + (count(fresh) + count(changed) === 1 ? "it" : "them"));
  });
  source.addEventListener("reset", function () { show("The inbox changed: reload"); });
  button.addEventListener("click", function () { window.location.reload(); });
});
