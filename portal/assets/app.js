// mb portal: the only script. It adds the reader's local time beside each UTC time; pages
// work without it.
document.querySelectorAll("time[datetime]").forEach(function (t) {
  var d = new Date(t.getAttribute("datetime"));
  if (isNaN(d)) return;
  var local = document.createElement("span");
  local.className = "local";
  local.textContent = "(" + d.toLocaleString() + " local)";
  t.insertAdjacentElement("afterend", local);
});
