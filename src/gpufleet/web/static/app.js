// gpufleet dashboard: ask before a form marked data-confirm is sent (no inline scripts: the CSP forbids them)
document.addEventListener("submit", function (e) {
  var msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) { e.preventDefault(); }
}, true);
