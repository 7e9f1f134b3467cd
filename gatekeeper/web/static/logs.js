// Line anchors in rendered logs: #L12 marks one line, #L10-L20 a range.
// Clicking a line number marks it; shift-click marks the range from the
// line marked before. Loaded as a file: the page's CSP allows no inline script.
(function () {
  "use strict";
  var marked = [];
  var anchor = null;

  function parse(hash) {
    var m = /^#L(\d+)(?:-L?(\d+))?$/.exec(hash);
    if (!m) { return null; }
    var a = parseInt(m[1], 10), b = m[2] ? parseInt(m[2], 10) : a;
    return a <= b ? [a, b] : [b, a];
  }

  function mark() {
    marked.forEach(function (el) { el.classList.remove("gk-hl"); });
    marked = [];
    var range = parse(window.location.hash);
    if (!range) { return; }
    for (var n = range[0]; n <= range[1]; n++) {
      var el = document.getElementById("L" + n);
      if (el) { el.classList.add("gk-hl"); marked.push(el); }
    }
    var first = document.getElementById("L" + range[0]);
    if (first) { first.scrollIntoView({block: "center"}); }
    anchor = range[0];
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a.gk-lno") : null;
    if (!link) { return; }
    var n = parseInt(link.textContent, 10);
    if (event.shiftKey && anchor !== null) {
      event.preventDefault();
      var a = Math.min(anchor, n), b = Math.max(anchor, n);
      window.location.hash = "#L" + a + "-L" + b;
    }
  });
  window.addEventListener("hashchange", mark);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", mark);
  } else {
    mark();
  }
})();
