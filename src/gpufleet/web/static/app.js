// gpufleet dashboard: ask before a form marked data-confirm is sent (no inline scripts: the CSP forbids them)
document.addEventListener("submit", function (e) {
  var msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) { e.preventDefault(); }
}, true);
// the live log follows its end while the reader is at the bottom
document.addEventListener("htmx:beforeSwap", function (e) {
  var log = document.getElementById("log");
  if (log && log.contains(e.detail.target)) {
    log.dataset.follow = (log.scrollTop + log.clientHeight >= log.scrollHeight - 24) ? "1" : "";
  }
});
document.addEventListener("htmx:afterSettle", function () {
  var log = document.getElementById("log");
  if (log && log.dataset.follow === "1") { log.scrollTop = log.scrollHeight; }
});
