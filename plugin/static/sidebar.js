// Chatwoot Dashboard App: the conversation's SLA with live countdowns (Chatwoot's DashboardApp/Frame.vue).
// Context comes only from the configured Chatwoot origin; everything it carries is treated as untrusted
// and rendered as text. The token in this page's URL (?token=) is sent as a header to our own API.
(function () {
  "use strict";
  var FETCH_INFO = "chatwoot-dashboard-app:fetch-info";
  var POLL_MS = 30000;
  var METRICS = [["first_response", "First response"], ["next_response", "Next response"], ["resolution", "Resolution"]];
  var EVENTS = {applied: "SLA applied", policy_changed: "Policy changed", paused: "Clock paused",
                resumed: "Clock resumed", at_risk: "At risk", hit: "Met", missed: "Missed",
                miss_corrected: "Miss corrected (a late event showed it was in time)"};

  var app = document.getElementById("app");
  var allowedOrigin = app.getAttribute("data-chatwoot-origin");
  var defaultAccount = app.getAttribute("data-default-account");
  var token = new URLSearchParams(window.location.search).get("token") || "";
  var answer = null, answeredAt = 0, shown = null, ignored = 0;

  function $(id) { return document.getElementById(id); }

  function setState(state, message) {
    app.setAttribute("data-state", state);
    $("message").textContent = message || "";
    $("message").hidden = !message;
    $("sla").hidden = state !== "ready";
  }

  function askForContext() {
    if (window.parent !== window && allowedOrigin) { window.parent.postMessage(FETCH_INFO, allowedOrigin); }
  }

  function wholeNumber(value) { return /^[0-9]+$/.test(String(value)); }

  function onMessage(event) {
    if (!allowedOrigin || event.origin !== allowedOrigin) {
      ignored += 1;
      app.setAttribute("data-ignored", String(ignored));
      return;
    }
    var payload = event.data;
    if (typeof payload === "string") {
      try { payload = JSON.parse(payload); } catch (error) { return; }
    }
    if (!payload || payload.event !== "appContext" || !payload.data || !payload.data.conversation) { return; }
    var conversation = payload.data.conversation;
    var firstMessage = (conversation.messages || [])[0] || {};
    var account = conversation.account_id || firstMessage.account_id || defaultAccount;
    if (!wholeNumber(account) || !wholeNumber(conversation.id)) {
      setState("error", "Chatwoot sent no conversation id or account id (set CHATWOOT_ACCOUNT_ID).");
      return;
    }
    load(String(account), String(conversation.id));
  }

  function load(account, id) {
    var key = account + "/" + id;
    if (shown !== key) { setState("loading", "Loading the SLA of conversation #" + id + "…"); }
    fetch("/api/sidebar/conversations/" + account + "/" + id,
          {headers: {Authorization: "Bearer " + token}, cache: "no-store", credentials: "omit"})
      .then(function (response) {
        if (!response.ok) { throw new Error(response.status === 401 || response.status === 403 ?
          "This app's URL has no valid token (SLA_SIDEBAR_TOKEN)." : "The SLA service answered " + response.status + "."); }
        return response.json();
      })
      .then(function (data) {
        shown = key;
        app.setAttribute("data-conversation", key);
        if (!data.policy) { answer = null; setState("none", "No SLA applies to this conversation."); return; }
        answer = data;
        answeredAt = Date.now();
        render(data);
        setState("ready");
        tick();
      })
      .catch(function (error) { setState("error", error.message); });
  }

  function formatter(zone) {
    try {
      return new Intl.DateTimeFormat(undefined, {timeZone: zone, weekday: "short", day: "numeric", month: "short",
                                                 hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
    } catch (error) {
      return new Intl.DateTimeFormat(undefined, {timeZone: "UTC", weekday: "short", day: "numeric", month: "short",
                                                 hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
    }
  }

  function when(text) { return text ? formatter(answer ? answer.policy.timezone : "UTC").format(new Date(text)) : ""; }

  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    var days = Math.floor(seconds / 86400), hours = Math.floor(seconds % 86400 / 3600);
    var minutes = Math.floor(seconds % 3600 / 60), rest = seconds % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return (days ? days + "d " : "") + (days || hours ? hours + "h " : "") + pad(minutes) + "m " + pad(rest) + "s";
  }

  function element(name, className, content, parent) {
    var node = document.createElement(name);
    if (className) { node.className = className; }
    if (content !== undefined && content !== null) { node.textContent = content; }
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function render(data) {
    var policy = data.policy;
    $("policy-name").textContent = policy.name;
    var details = [];
    if (policy.target !== null) { details.push("target " + Math.round(policy.target * 1000) / 10 + " %"); }
    details.push(policy.calendar ? "business hours: " + policy.calendar + " (" + policy.timezone + ")" : "around the clock");
    details.push("version " + policy.version);
    $("policy-detail").textContent = details.join(" · ");
    $("status").textContent = data.status.replace("_", " ");
    $("status").className = "badge " + data.status;
    $("mode").hidden = policy.mode !== "shadow";
    $("timezone").textContent = "(" + policy.timezone + ")";

    var holder = $("metrics");
    holder.textContent = "";
    METRICS.forEach(function (pair) {
      var metric = data.metrics[pair[0]];
      if (!metric) { return; }
      var box = element("div", "metric", null, holder);
      box.setAttribute("data-metric", pair[0]);
      var title = element("div", "name", null, box);
      element("span", null, pair[1], title);
      element("span", "badge " + metric.status, metric.status.replace("_", " "), title);
      element("div", "countdown", null, box);
      element("div", "hours", null, box);
      var facts = [];
      if (metric.due_at) { facts.push("due " + when(metric.due_at)); }
      if (metric.stopped_at) { facts.push("stopped " + when(metric.stopped_at)); }
      if (metric.missed_at) { facts.push("missed at " + when(metric.missed_at)); }
      if (metric.misses) {
        facts.push(metric.misses + (metric.misses === 1 ? " miss" : " misses") +
                   (metric.misses_per_message ? " (" + metric.misses_per_message + " per customer message)" : ""));
      }
      if (metric.status === "paused") { facts.push("paused while " + policy.pause_when.join(" or ")); }
      if (metric.status === "not_started") { facts.push("starts when the customer writes after an agent's reply"); }
      element("div", "small", facts.join(" · "), box);
    });

    var timeline = $("timeline");
    timeline.textContent = "";
    data.timeline.forEach(function (entry) {
      var item = element("li", entry.kind, null, timeline);
      var label = EVENTS[entry.kind] || entry.kind;
      var metric = METRICS.filter(function (pair) { return pair[0] === entry.metric; })[0];
      element("span", null, label + (metric ? ": " + metric[1].toLowerCase() : ""), item);
      element("span", "when", when(entry.at), item);
    });
  }

  // Working time left, ticking in the browser: it runs while the calendar is open and stands still while
  // it is closed; at the calendar's next change the server's answer (refreshed every 30 s) takes over.
  function tick() {
    if (!answer) { return; }
    var now = Date.now();
    METRICS.forEach(function (pair) {
      var metric = answer.metrics[pair[0]];
      var box = document.querySelector('[data-metric="' + pair[0] + '"]');
      if (!metric || !box) { return; }
      var countdown = box.querySelector(".countdown"), hours = box.querySelector(".hours");
      var running = (metric.status === "running" || metric.status === "at_risk") && metric.due_at;
      countdown.textContent = "";
      hours.textContent = "";
      countdown.classList.remove("overdue");
      if (!running) { return; }
      var due = Date.parse(metric.due_at);
      if (now >= due) {
        countdown.textContent = "overdue by " + duration((now - due) / 1000);
        countdown.classList.add("overdue");
        return;
      }
      var change = metric.calendar_changes_at ? Date.parse(metric.calendar_changes_at) : Infinity;
      var elapsed = metric.calendar_open_now ? Math.min(now, change) - answeredAt : Math.max(0, now - change);
      var left = metric.remaining_working_seconds - Math.max(0, elapsed) / 1000;
      countdown.textContent = duration(left) + " left";
      countdown.setAttribute("data-seconds", String(Math.round(left)));
      if (!metric.calendar_open_now && now < change) {
        hours.textContent = "outside business hours: the clock stands still until " + when(metric.calendar_changes_at);
      }
    });
  }

  window.addEventListener("message", onMessage);
  if (!allowedOrigin) {
    setState("error", "CHATWOOT_URL is not set, so this app cannot tell Chatwoot's messages from others.");
  } else if (window.parent === window) {
    setState("error", "Open this page as a Dashboard App inside Chatwoot.");
  } else {
    askForContext();
    window.setInterval(askForContext, POLL_MS);
  }
  window.setInterval(tick, 1000);
})();
