/*
 * ActiveCampaign Bridge: the sales pages, the action dialog and the marketing-activity timeline.
 *
 * Web resource ac_/js/sales.js, loaded after ac_/js/bridge_client.js and ac_/js/pages.js by
 * ac_/html/action_dialog.html and ac_/html/timeline.html (the page names itself in
 * <body data-page="...">).
 *
 * The action dialog is opened by ribbon.js with Xrm.Navigation.navigateTo and
 * data = {"action": "addToAutomation" | "sendCampaign", "entity": "lead", "ids": [...]}.
 * It lists automations (active first) or campaigns from the bridge, lets the user search and
 * pick one, posts the action (with an Idempotency-Key made once per dialog, so a double click or
 * a retried request never starts a second action) and polls the action until every record has
 * its result.
 *
 * The timeline reads {"entity", "id"} from `data` (ribbon side pane) or `typename`/`id` (the web
 * resource on a form) and renders GET /api/v1/records/<entity>/<id>/activities, newest first,
 * with "Load more".
 */
var ActiveCampaignBridge = window.ActiveCampaignBridge || {};
window.ActiveCampaignBridge = ActiveCampaignBridge;
ActiveCampaignBridge.sales = ActiveCampaignBridge.sales || {};

(function () {
  "use strict";

  var POLL_MS = 1000;
  var NAME_LOOKUPS = 50; /* records whose names the dialog looks up (the rest show their id) */
  var ACTIONS = {
    addToAutomation: {
      title: "Add to Automation",
      list: "/api/v1/automations",
      key: "automations",
      post: "/api/v1/actions/add-to-automation",
      field: "automation_id",
      noun: "automation",
      confirm: "Add to automation",
      empty: "There are no automations in ActiveCampaign yet."
    },
    sendCampaign: {
      title: "Send Campaign",
      list: "/api/v1/campaigns",
      key: "campaigns",
      post: "/api/v1/actions/send-campaign",
      field: "campaign_id",
      noun: "campaign",
      confirm: "Send campaign",
      empty: "There is no campaign that can be sent to one contact."
    }
  };
  var RESULT_LABELS = {
    queued: "Waiting",
    running: "Working\u2026",
    done: "Done",
    already_in_automation: "Already in this automation",
    already_sent: "Already sent recently",
    skipped_no_email: "Skipped: no email address",
    skipped_excluded: "Skipped: excluded from sync",
    failed: "Failed"
  };
  var FINAL_OK = { done: true, already_in_automation: true, already_sent: true };

  function $(id) {
    return document.getElementById(id);
  }

  function text(id, value) {
    var element = $(id);
    if (element) {
      element.textContent = value;
    }
  }

  function show(id, visible) {
    var element = $(id);
    if (element) {
      element.hidden = !visible;
    }
  }

  function xrm() {
    return window.Xrm || (window.parent && window.parent.Xrm) || null;
  }

  /* Pages of the solution share the organization's origin: a finished action tells any open
     timeline of the same records to reload, so the user sees the new activity at once. */
  var CHANNEL = "activecampaign-bridge";

  function announce(message) {
    if (typeof window.BroadcastChannel === "function") {
      var channel = new window.BroadcastChannel(CHANNEL);
      channel.postMessage(message);
      channel.close();
    }
  }

  function listen(callback) {
    if (typeof window.BroadcastChannel === "function") {
      new window.BroadcastChannel(CHANNEL).onmessage = function (event) { callback(event.data); };
    }
  }

  function newKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    return "k-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }

  function formatDate(iso) {
    if (!iso) {
      return "";
    }
    var date = new Date(iso);
    return isNaN(date.getTime()) ? iso : date.toLocaleString();
  }

  /* "3 minutes ago", "yesterday", "2 months ago"; "just now" under a minute. */
  ActiveCampaignBridge.sales.relativeTime = function (iso, now) {
    var then = new Date(iso).getTime();
    if (isNaN(then)) {
      return "";
    }
    var seconds = Math.round(((now || Date.now()) - then) / 1000);
    var future = seconds < 0;
    seconds = Math.abs(seconds);
    var units = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400],
      ["hour", 3600], ["minute", 60]];
    for (var i = 0; i < units.length; i += 1) {
      var count = Math.floor(seconds / units[i][1]);
      if (count >= 1) {
        if (units[i][0] === "day" && count === 1 && !future) {
          return "yesterday";
        }
        var label = count + " " + units[i][0] + (count === 1 ? "" : "s");
        return future ? "in " + label : label + " ago";
      }
    }
    return "just now";
  };

  /* ---------------------------------------------------------------------------------------- */
  /* Action dialog                                                                            */
  /* ---------------------------------------------------------------------------------------- */

  function ActionDialog(data) {
    this.data = data || {};
    this.kind = ACTIONS[this.data.action];
    this.ids = Array.isArray(this.data.ids) ? this.data.ids : [];
    this.entity = this.data.entity || "";
    this.items = [];
    this.selected = null;
    this.idempotencyKey = newKey();
    this.names = {};
    this.actionId = null;
    this.finished = false;
  }

  ActionDialog.prototype.fail = function (message) {
    var box = $("error");
    box.textContent = message;
    box.hidden = false;
  };

  ActionDialog.prototype.start = function () {
    var self = this;
    $("cancel").addEventListener("click", function () { self.close(); });
    if (!this.kind) {
      this.fail("This dialog was opened without an action.");
      text("list-status", "");
      return;
    }
    document.title = "ActiveCampaign: " + this.kind.title;
    text("dialog-title", this.kind.title);
    text("search-label", "Search " + this.kind.noun + "s");
    $("confirm").textContent = this.kind.confirm;
    if (this.ids.length === 0) {
      this.fail("No records were selected.");
      text("list-status", "");
      return;
    }
    $("search").addEventListener("input", function () { self.renderChoices(); });
    $("confirm").addEventListener("click", function () { self.confirm(); });
    this.lookUpNames();
    this.load();
  };

  ActionDialog.prototype.close = function () {
    window.close();
  };

  ActionDialog.prototype.load = function () {
    var self = this;
    text("list-status", "Loading " + this.kind.noun + "s\u2026");
    return ActiveCampaignBridge.client.get(this.kind.list).then(function (body) {
      self.items = (body && body[self.kind.key]) || [];
      $("search").disabled = false;
      self.renderChoices();
      $("search").focus();
    }, function (error) {
      text("list-status", "");
      self.fail(self.explain(error));
      $("confirm").disabled = true;
    });
  };

  /* The bridge's own message, which already says what to do (e.g. the missing role). */
  ActionDialog.prototype.explain = function (error) {
    var message = error && error.message ? error.message : String(error);
    if (error && error.status === 403) {
      return "You cannot run ActiveCampaign actions: " + message;
    }
    return message;
  };

  ActionDialog.prototype.describe = function (item) {
    if (this.data.action === "addToAutomation") {
      return item.active ? "Active" : "Inactive";
    }
    var status = item.status ? item.status.charAt(0).toUpperCase() + item.status.slice(1) : "";
    return status + (item.last_sent_at ? " \u00b7 last sent " + formatDate(item.last_sent_at) : "");
  };

  ActionDialog.prototype.renderChoices = function () {
    var self = this;
    var query = $("search").value.trim().toLowerCase();
    var list = $("choices");
    list.textContent = "";
    var shown = this.items.filter(function (item) {
      return !query || item.name.toLowerCase().indexOf(query) !== -1;
    });
    if (this.items.length === 0) {
      text("list-status", this.kind.empty);
    } else if (shown.length === 0) {
      text("list-status", "No " + this.kind.noun + " matches \u201c" + query + "\u201d.");
    } else {
      text("list-status", "");
    }
    shown.forEach(function (item) {
      var usable = self.data.action === "addToAutomation" ? item.active : item.sendable !== false;
      var li = document.createElement("li");
      var label = document.createElement("label");
      label.className = "ac-choice" + (usable ? "" : " ac-disabled");
      var input = document.createElement("input");
      input.type = "radio";
      input.name = "choice";
      input.value = item.id;
      input.disabled = !usable;
      input.checked = self.selected === item.id;
      input.addEventListener("change", function () {
        self.selected = item.id;
        self.selectedName = item.name;
        $("confirm").disabled = false;
      });
      var name = document.createElement("span");
      name.className = "ac-choice-name";
      name.textContent = item.name;
      var meta = document.createElement("span");
      meta.className = "ac-choice-meta";
      meta.textContent = self.describe(item);
      label.appendChild(input);
      label.appendChild(name);
      label.appendChild(meta);
      li.appendChild(label);
      list.appendChild(li);
    });
  };

  ActionDialog.prototype.lookUpNames = function () {
    var self = this;
    var api = xrm();
    if (!api || !api.WebApi || !this.entity) {
      return;
    }
    this.ids.slice(0, NAME_LOOKUPS).forEach(function (id) {
      Promise.resolve().then(function () {
        return api.WebApi.retrieveRecord(self.entity, id, "?$select=fullname");
      }).then(function (row) {
        if (row && row.fullname) {
          self.names[id] = row.fullname;
          var cell = document.querySelector('[data-record="' + id + '"] .ac-record-name');
          if (cell) {
            cell.textContent = row.fullname;
          }
        }
      }).catch(function () { /* the id is shown instead */ });
    });
  };

  ActionDialog.prototype.confirm = function () {
    var self = this;
    if (!this.selected || this.actionId) {
      return;
    }
    var button = $("confirm");
    button.disabled = true;
    button.textContent = "Starting\u2026";
    $("error").hidden = true;
    var body = { entity: this.entity, record_ids: this.ids, idempotency_key: this.idempotencyKey };
    body[this.kind.field] = this.selected;
    ActiveCampaignBridge.client.post(this.kind.post, body).then(function (accepted) {
      self.actionId = accepted.action_id;
      show("choose", false);
      show("progress", true);
      $("cancel").textContent = "Close";
      button.hidden = true;
      self.renderRecords(null);
      self.poll();
    }, function (error) {
      button.disabled = false;
      button.textContent = self.kind.confirm;
      self.fail(self.explain(error));
    });
  };

  ActionDialog.prototype.poll = function () {
    var self = this;
    ActiveCampaignBridge.client.get("/api/v1/actions/" + this.actionId).then(function (action) {
      self.renderRecords(action);
      if (!action.finished) {
        window.setTimeout(function () { self.poll(); }, POLL_MS);
      } else {
        self.finished = true;
        document.body.setAttribute("data-finished", "true");
        announce({ type: "action-finished", entity: self.entity, ids: self.ids });
      }
    }, function (error) {
      text("summary", "Could not read the progress (" + error.message + "); retrying\u2026");
      window.setTimeout(function () { self.poll(); }, POLL_MS * 3);
    });
  };

  ActionDialog.prototype.renderRecords = function (action) {
    var self = this;
    var results = {};
    ((action && action.records) || []).forEach(function (record) {
      results[record.record_id] = record;
    });
    var body = $("records");
    body.textContent = "";
    var finals = 0;
    var good = 0;
    this.ids.forEach(function (rawId) {
      var id = String(rawId).replace(/[{}]/g, "").toLowerCase();
      var result = results[id] || { status: "queued", detail: "" };
      var row = document.createElement("tr");
      row.setAttribute("data-record", id);
      row.setAttribute("data-status", result.status);
      var nameCell = document.createElement("td");
      var name = document.createElement("span");
      name.className = "ac-record-name";
      name.textContent = self.names[id] || self.names[rawId] || id;
      nameCell.appendChild(name);
      var resultCell = document.createElement("td");
      var badge = document.createElement("span");
      badge.className = "ac-result ac-result-" + result.status;
      badge.textContent = RESULT_LABELS[result.status] || result.status;
      resultCell.appendChild(badge);
      if (result.status !== "queued" && result.status !== "running" && result.detail) {
        var detail = document.createElement("span");
        detail.className = "ac-result-detail";
        detail.textContent = result.detail;
        resultCell.appendChild(detail);
      }
      row.appendChild(nameCell);
      row.appendChild(resultCell);
      body.appendChild(row);
      if (result.status !== "queued" && result.status !== "running") {
        finals += 1;
        if (FINAL_OK[result.status]) {
          good += 1;
        }
      }
    });
    var total = this.ids.length;
    $("bar-fill").style.width = Math.round((finals / Math.max(total, 1)) * 100) + "%";
    var target = (action && action.target_name) || this.selectedName || "";
    if (action && action.finished) {
      text("summary", "Finished: " + good + " of " + total + " " +
        (total === 1 ? "record" : "records") + " " +
        (this.data.action === "addToAutomation" ? "in \u201c" + target + "\u201d" :
          "received \u201c" + target + "\u201d") + ".");
    } else {
      text("summary", "Working on " + total + " " + (total === 1 ? "record" : "records") +
        " (" + finals + " finished)\u2026");
    }
  };

  ActiveCampaignBridge.sales.ActionDialog = ActionDialog;

  /* ---------------------------------------------------------------------------------------- */
  /* Timeline                                                                                 */
  /* ---------------------------------------------------------------------------------------- */

  var PAGE_SIZE = 20;
  var SVG_NS = "http://www.w3.org/2000/svg";
  /* 16x16 outline icons, one per item icon name the bridge sends. */
  var ICON_PATHS = {
    "send": "M1.5 7.5 14.5 1.5 10 14.5 7.5 9z M7.5 9 14.5 1.5",
    "open": "M1 8s2.5-5 7-5 7 5 7 5-2.5 5-7 5-7-5-7-5z M8 6a2 2 0 1 0 0 4 2 2 0 0 0 0-4z",
    "click": "M6 2v8l2-2 2 4 1.5-.7-2-4H12z",
    "automation": "M2 4h5v3H2z M9 9h5v3H9z M4.5 7v3.5H9",
    "automation-done": "M2 8.5 6 12.5 14 3.5",
    "tag": "M2 2h6l6 6-6 6-6-6z M5 5.5a.5.5 0 1 0 0 .01",
    "tag-off": "M2 2h6l6 6-6 6-6-6z M5 11 11 5",
    "list": "M2 4h8 M2 8h8 M2 12h5 M12 10v4 M10 12h4",
    "list-off": "M2 4h8 M2 8h8 M2 12h5 M10 12h4",
    "globe": "M8 1.5a6.5 6.5 0 1 0 0 13 6.5 6.5 0 0 0 0-13z M1.5 8h13 M8 1.5c2 2 2 11 0 13 M8 1.5c-2 2-2 11 0 13",
    "bolt": "M9 1 3 9h4l-1 6 6-8H8z",
    "note": "M3 2h7l3 3v9H3z M5 7h6 M5 10h6",
    "dot": "M8 6a2 2 0 1 0 0 4 2 2 0 0 0 0-4z"
  };

  function icon(name) {
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 16 16");
    svg.setAttribute("width", "16");
    svg.setAttribute("height", "16");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", ICON_PATHS[name] || ICON_PATHS.dot);
    svg.appendChild(path);
    return svg;
  }

  function Timeline(entity, id) {
    this.entity = entity;
    this.id = id ? String(id).replace(/[{}]/g, "").toLowerCase() : null;
    this.nextOffset = 0;
    this.loading = false;
  }

  Timeline.prototype.path = function (offset) {
    return "/api/v1/records/" + encodeURIComponent(this.entity) + "/" +
      encodeURIComponent(this.id) + "/activities?limit=" + PAGE_SIZE + "&offset=" + offset;
  };

  Timeline.prototype.start = function () {
    var self = this;
    $("retry").addEventListener("click", function () { self.reload(); });
    $("load-more").addEventListener("click", function () { self.more(); });
    listen(function (message) {
      var ids = (message && message.ids) || [];
      var mine = ids.some(function (id) {
        return String(id).replace(/[{}]/g, "").toLowerCase() === self.id;
      });
      if (message && message.type === "action-finished" && mine && !self.loading) {
        self.reload();
      }
    });
    if (!this.entity || !this.id) {
      this.state("No record", "Save the lead or contact first: the timeline shows the " +
        "marketing activity of a saved record.", false);
      return;
    }
    this.reload();
  };

  Timeline.prototype.state = function (title, reason, retry, kind) {
    text("timeline-status", "");
    var box = $("timeline-state");
    box.hidden = false;
    box.setAttribute("data-state", kind || "info");
    text("state-title", title);
    text("state-reason", reason || "");
    show("retry", !!retry);
  };

  Timeline.prototype.reload = function () {
    $("timeline").textContent = "";
    show("timeline-state", false);
    show("load-more", false);
    text("timeline-status", "Loading\u2026");
    this.nextOffset = 0;
    return this.fetch(0);
  };

  Timeline.prototype.more = function () {
    if (this.nextOffset !== null && !this.loading) {
      $("load-more").disabled = true;
      $("load-more").textContent = "Loading\u2026";
      return this.fetch(this.nextOffset);
    }
    return Promise.resolve();
  };

  Timeline.prototype.fetch = function (offset) {
    var self = this;
    this.loading = true;
    return ActiveCampaignBridge.client.get(this.path(offset)).then(function (page) {
      self.loading = false;
      self.render(page, offset);
    }, function (error) {
      self.loading = false;
      $("load-more").disabled = false;
      $("load-more").textContent = "Load more";
      if (error && error.status === 503) {
        self.state("ActiveCampaign is unreachable", "The activity could not be loaded right " +
          "now (" + error.message + ").", true, "error");
      } else if (error && (error.status === 401 || error.status === 403)) {
        var why = String(error.message || "");
        self.state("You cannot see marketing activity",
          why.charAt(0).toUpperCase() + why.slice(1) + ".", false, "error");
      } else {
        self.state("The activity could not be loaded", error && error.message, true, "error");
      }
    });
  };

  Timeline.prototype.render = function (page, offset) {
    text("timeline-status", "");
    var link = $("contact-link");
    if (page.contact && page.contact.url) {
      link.href = page.contact.url;
      link.hidden = false;
    }
    if (page.state === "not_synced") {
      this.state("Not in ActiveCampaign yet", page.reason, false, "not-synced");
      document.body.setAttribute("data-state", "not_synced");
      document.body.setAttribute("data-reason", page.reason_code || "");
      return;
    }
    if (offset === 0 && page.items.length === 0) {
      this.state("No marketing activity yet", "Emails, automations, tags and site visits of " +
        "this contact will show here.", false, "empty");
      document.body.setAttribute("data-state", "empty");
      return;
    }
    show("timeline-state", false);
    document.body.setAttribute("data-state", "ok");
    var list = $("timeline");
    var now = Date.now();
    page.items.forEach(function (item) {
      var li = document.createElement("li");
      li.className = "ac-item ac-kind-" + item.kind;
      li.setAttribute("data-kind", item.kind);
      li.setAttribute("data-id", item.id);
      var badge = document.createElement("span");
      badge.className = "ac-icon ac-icon-" + item.icon;
      badge.appendChild(icon(item.icon));
      var body = document.createElement("div");
      body.className = "ac-item-body";
      var sentence = document.createElement("p");
      sentence.className = "ac-item-text";
      sentence.textContent = item.text;
      body.appendChild(sentence);
      var meta = document.createElement("p");
      meta.className = "ac-item-meta";
      if (item.occurred_at) {
        var time = document.createElement("time");
        time.dateTime = item.occurred_at;
        time.title = formatDate(item.occurred_at) + " (" + item.occurred_at + ")";
        time.textContent = ActiveCampaignBridge.sales.relativeTime(item.occurred_at, now);
        meta.appendChild(time);
      }
      if (item.link_url && /^https?:\/\//i.test(item.link_url)) {
        var clicked = document.createElement("a");
        clicked.href = item.link_url;
        clicked.target = "_blank";
        clicked.rel = "noopener noreferrer";
        clicked.className = "ac-item-link";
        clicked.textContent = item.link_url;
        meta.appendChild(clicked);
      }
      if (item.ac_url) {
        var open = document.createElement("a");
        open.href = item.ac_url;
        open.target = "_blank";
        open.rel = "noopener";
        open.className = "ac-item-ac";
        open.textContent = "View in ActiveCampaign";
        meta.appendChild(open);
      }
      body.appendChild(meta);
      li.appendChild(badge);
      li.appendChild(body);
      list.appendChild(li);
    });
    this.nextOffset = page.has_more ? page.next_offset : null;
    var more = $("load-more");
    more.disabled = false;
    more.textContent = "Load more";
    more.hidden = !page.has_more;
  };

  ActiveCampaignBridge.sales.Timeline = Timeline;

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.getAttribute("data-page");
    var read = ActiveCampaignBridge.pages && ActiveCampaignBridge.pages.readParameters;
    var parameters = read ? read() : { data: null, id: null, typename: null };
    var data = parameters.data || {};
    if (page === "action_dialog") {
      ActiveCampaignBridge.sales.dialog = new ActionDialog(data);
      ActiveCampaignBridge.sales.dialog.start();
    } else if (page === "timeline") {
      ActiveCampaignBridge.sales.timeline = new Timeline(
        data.entity || parameters.typename, data.id || parameters.id);
      ActiveCampaignBridge.sales.timeline.start();
    }
  });
})();
