// apbatch portal: live progress of running batches. The pages work without
// it; it only polls the batch's state and updates the progress bar, then
// reloads the page once the batch has ended.
(function () {
  "use strict";
  var RUNNING = { created: true, split: true, received: true };
  function poll(el) {
    var url = el.getAttribute("data-poll");
    var bar = el.querySelector("progress");
    var live = el.querySelector("[data-live]");
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (b) {
          if (!b) { return; }
          if (!RUNNING[b.state]) {
            if (el.hasAttribute("data-reload")) { window.location.replace(window.location.pathname); return; }
            var cell = el.querySelector(".state");
            if (cell) { cell.textContent = b.label; }
            if (bar) { bar.remove(); }
            if (live) { live.textContent = ""; }
            var notice = document.getElementById("notice");
            if (notice) { notice.textContent = "Un lot est " + b.label + " : rechargez la page pour voir ses résultats."; }
            return;
          }
          if (bar) {
            bar.value = b.progress_percent;
            bar.setAttribute("aria-valuenow", String(b.progress_percent));
            bar.textContent = b.progress_percent + " %";
          }
          if (live) { live.textContent = b.progress_percent + " %" + (b.eta ? ", fin dans " + b.eta : ""); }
          window.setTimeout(tick, 2000);
        })
        .catch(function () { window.setTimeout(tick, 5000); });
    }
    window.setTimeout(tick, 1000);
  }
  document.querySelectorAll("[data-poll]").forEach(poll);
})();
