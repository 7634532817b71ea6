// aiservice dashboard: the one script, loaded from this server (the page's policy allows no
// other). It refreshes the jobs tables in place while a job runs; every page works without it.
"use strict";

(function () {
  const REFRESH_MS = 2000;

  function refresh(container) {
    const source = container.getAttribute("data-live-refresh");
    const running = container.querySelector("[data-running]");
    if (!source || !running || running.getAttribute("data-running") !== "true") {
      return; // nothing runs: nothing changes until something new is started
    }
    window.setTimeout(function () {
      fetch(source, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (answer) {
          if (answer.redirected) { window.location.reload(); } // signed out meanwhile
          if (!answer.ok || answer.redirected) { throw new Error("HTTP " + answer.status); }
          return answer.text();
        })
        .then(function (html) {
          container.innerHTML = html;
          refresh(container);
        })
        .catch(function () { window.setTimeout(function () { refresh(container); }, REFRESH_MS); });
    }, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-refresh]").forEach(refresh);
  });
})();
