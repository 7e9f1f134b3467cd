// The live console of a running build: lines from /build/<uuid>/console
// (Server-Sent Events) appended as they arrive, as text (never markup).
// The box follows the newest line until the reader scrolls up; scrolling
// back to the bottom follows again. Loaded as a file: the CSP allows no
// inline script.
(function () {
  "use strict";
  var pre = document.getElementById("gk-live-console");
  var state = document.getElementById("gk-console-state");
  if (!pre || !state || !window.EventSource) { return; }
  var follow = true;

  function atBottom() {
    return pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
  }

  pre.addEventListener("scroll", function () {
    follow = atBottom();
    pre.setAttribute("data-follow", follow ? "yes" : "no");
  });

  var source = new EventSource(pre.getAttribute("data-src"));
  source.addEventListener("source", function (event) {
    state.textContent = event.data === "live" ? "live" : "from the archive";
    pre.setAttribute("data-source", event.data);
  });
  source.onmessage = function (event) {
    pre.appendChild(document.createTextNode(event.data + "\n"));
    if (follow) { pre.scrollTop = pre.scrollHeight; }
  };
  source.addEventListener("end", function (event) {
    // Closed before the server's close: EventSource would reconnect and
    // replay the console from its start.
    source.close();
    state.textContent = event.data ? "ended: " + event.data : "ended";
    pre.setAttribute("data-ended", event.data || "yes");
  });
  source.onerror = function () {
    source.close();
    state.textContent = "the stream was lost: reload to see more";
  };
})();
