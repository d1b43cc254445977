// The example's few lines of script. Without it every page still works:
// times show in UTC, forms submit without asking, and Back may show a page
// from the browser's cache after its session ended.
(function () {
  "use strict";
  // Relative times ("5 minutes ago"), kept up to date, with the exact time
  // in the browser's zone on hover; absolute times in the browser's zone.
  function ago(ms) {
    var m = Math.floor(ms / 60000), h = Math.floor(m / 60), d = Math.floor(h / 24);
    function n(x, unit) { return x + " " + unit + (x === 1 ? "" : "s") + " ago"; }
    if (m < 1) return "just now";
    if (h < 1) return n(m, "minute");
    if (d < 1) return n(h, "hour");
    return n(d, "day");
  }
  var exact = { dateStyle: "medium", timeStyle: "short" };
  function times() {
    // Another device's "Active now" past its data-until, when a reload
    // would show its last-seen time: the hidden text after it.
    document.querySelectorAll("[data-until]").forEach(function (s) {
      if (Date.now() < new Date(s.getAttribute("data-until"))) return;
      if (s.nextElementSibling) s.nextElementSibling.hidden = false;
      s.remove();
    });
    document.querySelectorAll("time[datetime]").forEach(function (t) {
      var at = new Date(t.getAttribute("datetime"));
      if (isNaN(at)) return;
      t.title = at.toLocaleString(undefined, exact);
      if (t.hasAttribute("data-rel")) t.textContent = ago(Date.now() - at);
      if (t.hasAttribute("data-abs")) t.textContent = at.toLocaleString(undefined, exact);
    });
  }
  // A page that Back or Forward restores from the browser's back/forward
  // cache is loaded again, so that the server, not the cache, decides what
  // it shows. Cache-Control: no-store does not keep a page out of that
  // cache in every browser (Chromium keeps it out only when a cookie
  // changed since): a session ended by another device or by its idle
  // timeout changes no cookie here, and the cached page would show the
  // user's data after the session is gone.
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) location.reload();
  });
  // A form with data-confirm asks before it is sent. A form is sent once:
  // a second click while the first is under way (a double click, or an
  // impatient one during a slow sign-in) would send it again, and two
  // sign-ins at once make two sessions, of which the browser keeps one;
  // the other, held by nobody, counts under the user's session limit
  // (SESSION_MAX_PER_USER) and can sign another of the user's devices
  // out. After 10 seconds without an answer it can be sent again, should
  // the first have been lost.
  document.addEventListener("submit", function (e) {
    var f = e.target, q = f.getAttribute("data-confirm");
    if (f.hasAttribute("data-sent") || (q && !window.confirm(q))) {
      e.preventDefault();
      return;
    }
    f.setAttribute("data-sent", "");
    setTimeout(function () { f.removeAttribute("data-sent"); }, 10000);
  });
  document.addEventListener("DOMContentLoaded", function () {
    times();
    setInterval(times, 30000);
    // A button with data-retry-after waits that many seconds (the
    // server's Retry-After) before it can be pressed again, counting down
    // in seconds, or minutes and seconds ("14:59") from a minute up. With
    // data-retry-name, the wait is that user name's login limit: it holds
    // only while the form's user name is that one, since another name has
    // a limit of its own.
    function left2(s) {
      if (s < 60) return String(s);
      var m = Math.floor(s / 60), r = s % 60;
      return m + ":" + (r < 10 ? "0" : "") + r;
    }
    // fold spells a user name as the limit counts it, near enough: trimmed
    // and in lower case (the server folds as strings.EqualFold does; a
    // name this tells apart where the server does not only gets the 429
    // page again).
    function fold(name) { return name.trim().toLowerCase(); }
    document.querySelectorAll("[data-retry-after]").forEach(function (b) {
      var until = Date.now() + 1000 * parseInt(b.getAttribute("data-retry-after"), 10), label = b.textContent;
      var name = b.getAttribute("data-retry-name"), field = name !== null && b.form ? b.form.elements.username : null;
      // show shows the wait, and reports whether it is still running.
      function show() {
        var left = Math.ceil((until - Date.now()) / 1000);
        if (left <= 0 || (field && fold(field.value) !== fold(name))) {
          b.disabled = false; b.textContent = label;
        } else {
          b.disabled = true; b.textContent = label + " (" + left2(left) + ")";
        }
        return left > 0;
      }
      function tick() { if (show()) setTimeout(tick, 1000); }
      if (field) field.addEventListener("input", show);
      tick();
    });
    // A countdown to the page's own refresh.
    document.querySelectorAll("[data-countdown]").forEach(function (c) {
      var left = parseInt(c.getAttribute("data-countdown"), 10);
      setInterval(function () {
        if (left > 1) c.textContent = --left + (left === 1 ? " second" : " seconds");
      }, 1000);
    });
  });
})();
