/* kpi-streams tracker: page views with engaged time, and form submits on request.
 *
 *   <script defer src="https://collect.example.com/t.js" data-token="pk_..."
 *           data-page-type="pricing"></script>
 *   kpi.track("form_submit", {contact_id: "c-123", goal: "demo_request"});
 *
 * A page view is sent once, when the page is first hidden (tab switch, navigation,
 * close) or after 5 minutes on the page, whichever comes first, with the foreground
 * time so far (Page Visibility API) as engaged_ms; sendBeacon carries it through an
 * unload. Its occurred_at is the page's load time. No cookies in cookieless mode;
 * otherwise one first-party id in localStorage.
 */
(function () {
  "use strict";
  var cfg = __KPI_CONFIG__;
  var script = document.currentScript;
  if (!script || window.kpi && window.kpi._loaded) { return; }
  var base = script.src.replace(/\/t\.js(\?.*)?$/, "");
  var token = script.getAttribute("data-token") || "";
  var endpoint = base + "/collect?token=" + encodeURIComponent(token);
  var MAX_WAIT_MS = 5 * 60 * 1000;

  function uuid() {
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
      var r = Math.random() * 16 | 0;
      return (c === "x" ? r : (r & 3 | 8)).toString(16);
    });
  }
  function visitor() {
    if (cfg.cookieless) { return null; }
    try {
      var id = localStorage.getItem("kpi_vid");
      if (!id) { id = uuid(); localStorage.setItem("kpi_vid", id); }
      return id;
    } catch (e) { return null; }
  }
  function device() {
    var ua = navigator.userAgent;
    if (/iPad|Tablet/i.test(ua) || (/Android/i.test(ua) && !/Mobi/i.test(ua))) {
      return "tablet";
    }
    return /Mobi|iPhone|iPod/i.test(ua) ? "mobile" : "desktop";
  }
  function utm() {
    var q = new URLSearchParams(location.search), out = {};
    ["utm_source", "utm_medium", "utm_campaign"].forEach(function (k) {
      if (q.get(k)) { out[k] = q.get(k); }
    });
    return out;
  }
  function send(events) {
    var now = new Date().toISOString();
    events.forEach(function (e) { e.sent_at = now; });
    var body = JSON.stringify(events.length === 1 ? events[0] : events);
    // text/plain keeps the request "simple": no CORS preflight, and beacons allow it
    if (navigator.sendBeacon &&
        navigator.sendBeacon(endpoint, new Blob([body], {type: "text/plain"}))) {
      return;
    }
    fetch(endpoint, {method: "POST", body: body, keepalive: true,
                     headers: {"Content-Type": "text/plain"}});
  }
  function base_event(type) {
    var e = {event_type: type, event_id: uuid(), schema_version: 1,
             occurred_at: new Date().toISOString()};
    var vid = visitor();
    if (vid) { e.visitor_id = vid; }
    return e;
  }

  var loaded = new Date();
  var campaign = utm();
  var shownSince = document.visibilityState === "visible" ? Date.now() : null;
  var engaged = 0, sent = false;
  function engagedNow() {
    return engaged + (shownSince === null ? 0 : Date.now() - shownSince);
  }
  function sendPageView() {
    if (sent) { return; }
    sent = true;
    var e = base_event("page_view");
    e.occurred_at = loaded.toISOString();
    e.url = location.href;
    e.referrer = document.referrer || null;
    e.page_type = script.getAttribute("data-page-type") || "other";
    e.device = device();
    e.engaged_ms = Math.round(engagedNow());
    Object.assign(e, campaign);
    send([e]);
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") {
      if (shownSince !== null) { engaged += Date.now() - shownSince; shownSince = null; }
      sendPageView();
    } else if (shownSince === null) {
      shownSince = Date.now();
    }
  });
  window.addEventListener("pagehide", sendPageView);
  setTimeout(sendPageView, MAX_WAIT_MS);

  window.kpi = {
    _loaded: true,
    /* kpi.track("form_submit", {contact_id, goal, ...}): sent now, with this page's
       visitor and utm fields; any other field of the catalogue's form_submit may go in */
    track: function (type, fields) {
      var e = Object.assign(base_event(type), campaign, fields || {});
      send([e]);
    },
    visitorId: visitor
  };
})();
