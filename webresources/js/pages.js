/*
 * ActiveCampaign Bridge: what every page of the solution does on load.
 *
 * Web resource ac_/js/pages.js, loaded after ac_/js/bridge_client.js. Each page names itself in
 * <body data-page="...">. This file reads the parameters Dynamics passes to a web resource
 * (`data` from Xrm.Navigation.navigateTo, or `id`/`typename` when the page sits on a form) and
 * shows whether the bridge address is configured. The features of each page arrive in later
 * versions; until then the page says so instead of pretending.
 */
var ActiveCampaignBridge = window.ActiveCampaignBridge || {};
window.ActiveCampaignBridge = ActiveCampaignBridge;
ActiveCampaignBridge.pages = ActiveCampaignBridge.pages || {};

(function () {
  "use strict";

  var ACTION_LABELS = { addToAutomation: "Add to Automation", sendCampaign: "Send Campaign" };

  /* Dynamics URL-decodes the query string once; the ribbon encodes `data` itself, so the value
     may arrive encoded once more. Both forms are accepted. */
  function parseData(value) {
    if (!value) {
      return null;
    }
    try {
      return JSON.parse(value);
    } catch (error) {
      try {
        return JSON.parse(decodeURIComponent(value));
      } catch (ignored) {
        return null;
      }
    }
  }

  ActiveCampaignBridge.pages.readParameters = function (search) {
    var params = new URLSearchParams(search === undefined ? window.location.search : search);
    return {
      data: parseData(params.get("data")),
      id: params.get("id") ? params.get("id").replace(/[{}]/g, "").toLowerCase() : null,
      typename: params.get("typename")
    };
  };

  function setText(id, text) {
    var element = document.getElementById(id);
    if (element) {
      element.textContent = text;
    }
  }

  function describeTarget(page, parameters) {
    var data = parameters.data || {};
    if (page === "action_dialog") {
      var ids = Array.isArray(data.ids) ? data.ids : [];
      var label = ACTION_LABELS[data.action] || "Unknown action";
      setText("target", label + ": " + ids.length + " " + (data.entity || "record") +
        (ids.length === 1 ? "" : "s") + " selected.");
    } else if (page === "timeline") {
      var entity = data.entity || parameters.typename;
      var id = data.id || parameters.id;
      setText("target", entity && id ? "Record: " + entity + " " + id :
        "No record: this page shows the marketing activity of a saved lead or contact.");
    }
  }

  ActiveCampaignBridge.pages.showConfiguration = function () {
    return ActiveCampaignBridge.client.getConfig().then(function (config) {
      setText("bridge-status", "Bridge address: " + config.baseUrl);
    }, function (error) {
      setText("bridge-status", error.message);
    });
  };

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.getAttribute("data-page");
    describeTarget(page, ActiveCampaignBridge.pages.readParameters());
    ActiveCampaignBridge.pages.showConfiguration();
  });
})();
