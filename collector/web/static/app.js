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
