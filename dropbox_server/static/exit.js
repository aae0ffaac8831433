/* Safe Report Drop Box: quick exit on every page.
 *
 * Pressing Esc three times (within two seconds) does what the "Quick exit" button does, and the
 * button itself replaces the current history entry, so Back does not return to this page.
 * Nothing is stored in the browser. */
(function () {
  "use strict";
  var PRESSES = 3;
  var WINDOW_MS = 2000;
  var presses = [];
  var leaving = false;

  function exitUrl() {
    var link = document.querySelector("a.quick-exit");
    return link ? link.href : "about:blank";
  }

  function quickExit(event) {
    if (event) event.preventDefault();
    leaving = true;
    // Blank the page at once, so nothing stays on screen while the other site loads.
    document.documentElement.style.visibility = "hidden";
    document.title = "";
    window.location.replace(exitUrl());
  }

  function isEscape(event) {
    return event.key === "Escape" || event.key === "Esc";
  }

  document.addEventListener("keydown", function (event) {
    if (!isEscape(event)) return;
    // Once leaving, more presses must not reach the browser: Esc also stops a page load.
    if (leaving) {
      event.preventDefault();
      return;
    }
    var now = Date.now();
    presses = presses.filter(function (t) { return now - t < WINDOW_MS; });
    presses.push(now);
    if (presses.length >= PRESSES) quickExit(event);
  });
  document.addEventListener("keyup", function (event) {
    if (leaving && isEscape(event)) event.preventDefault();
  });

  function ready() {
    var link = document.querySelector("a.quick-exit");
    if (link) link.addEventListener("click", quickExit);
    ["js-esc-note", "js-safest-note"].forEach(function (id) {
      var note = document.getElementById(id);
      if (note) note.hidden = false;
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
