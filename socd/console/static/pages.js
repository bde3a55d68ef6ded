// The pages' small enhancements (no inline script: the console's CSP forbids it).
// The queue's "select every alert on this page" box.
document.addEventListener("change", function (event) {
  var box = event.target;
  if (!box || box.id !== "select-all") { return; }
  var boxes = document.querySelectorAll("table.alerts input[name=id]");
  for (var i = 0; i < boxes.length; i++) { boxes[i].checked = box.checked; }
});
