/*
 * ActiveCampaign Bridge: command-bar (ribbon) commands for lead and contact.
 *
 * Web resource ac_/js/ribbon.js. The RibbonDiffXml in solution/src/Entities/<Entity>/RibbonDiff.xml
 * calls these functions by their full dotted names; `python -m solution check` verifies that every
 * FunctionName used there is defined in this file, so rename both together.
 *
 * Forms pass PrimaryControl (the form context), grids pass SelectedControl (the grid control);
 * every command also receives the entity logical name as a literal so it never has to guess.
 */
var ActiveCampaignBridge = window.ActiveCampaignBridge || {};
window.ActiveCampaignBridge = ActiveCampaignBridge;
ActiveCampaignBridge.Ribbon = ActiveCampaignBridge.Ribbon || {};

(function () {
  "use strict";

  /* The grid enable rule allows 1-250 rows; the same limit is enforced here in case a caller
     skips the rule (the bridge's action endpoints take at most one ActiveCampaign bulk page). */
  var MAX_SELECTION = 250;
  var USER_ROLE_NAME = "ActiveCampaign User";
  var ACTION_DIALOG = "ac_/html/action_dialog.html";
  var TIMELINE_PAGE = "ac_/html/timeline.html";
  var GUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

  /* The promise of the role check, kept for the page's lifetime: enable rules are evaluated
     again on every selection change and the user's roles do not change while the page is open. */
  var roleCheck = null;

  function xrm() {
    var api = window.Xrm || (window.parent && window.parent.Xrm);
    if (!api) {
      throw new Error("The Dynamics 365 client API (Xrm) is not available on this page.");
    }
    return api;
  }

  function eachItem(collection, callback) {
    if (!collection) {
      return;
    }
    if (typeof collection.forEach === "function") {
      collection.forEach(callback);
    } else if (typeof collection.get === "function") {
      (collection.get() || []).forEach(callback);
    }
  }

  function isFormContext(control) {
    return !!(control && control.data && control.data.entity &&
      typeof control.data.entity.getId === "function");
  }

  function rowEntity(row) {
    if (row && typeof row.getData === "function") {
      return row.getData().getEntity();
    }
    return row && row.data && row.data.entity;
  }

  /* Dataverse returns ids as "{D1B2...}"; the bridge and ActiveCampaign store them bare and in
     lower case, so every id leaves the browser in that one form. */
  ActiveCampaignBridge.Ribbon.normaliseId = function (value) {
    var id = String(value === null || value === undefined ? "" : value)
      .replace(/[{}]/g, "").trim().toLowerCase();
    if (!GUID_PATTERN.test(id)) {
      throw new Error("Not a record id: " + value);
    }
    return id;
  };

  /* Returns {entity, ids} for a form context (one saved record) or a grid control (the 1-250
     selected rows, without duplicates). Throws an Error whose message is shown to the user. */
  ActiveCampaignBridge.Ribbon.collectTarget = function (control, entityName) {
    var normaliseId = ActiveCampaignBridge.Ribbon.normaliseId;
    if (isFormContext(control)) {
      var record = control.data.entity;
      var rawId = record.getId();
      if (!rawId) {
        throw new Error("Save the record before using ActiveCampaign actions.");
      }
      return {
        entity: entityName || record.getEntityName(),
        ids: [normaliseId(rawId)]
      };
    }
    if (control && typeof control.getGrid === "function") {
      var ids = [];
      var entity = entityName ||
        (typeof control.getEntityName === "function" ? control.getEntityName() : "");
      eachItem(control.getGrid().getSelectedRows(), function (row) {
        var data = rowEntity(row);
        var id = normaliseId(data.getId());
        if (ids.indexOf(id) === -1) {
          ids.push(id);
        }
        if (!entity && typeof data.getEntityName === "function") {
          entity = data.getEntityName();
        }
      });
      if (ids.length === 0) {
        throw new Error("Select at least one record.");
      }
      if (ids.length > MAX_SELECTION) {
        throw new Error("Select at most " + MAX_SELECTION + " records (" + ids.length +
          " are selected).");
      }
      return { entity: entity, ids: ids };
    }
    throw new Error("ActiveCampaign actions work from a lead or contact form or grid.");
  };

  function showError(error) {
    return xrm().Navigation.openAlertDialog({
      title: "ActiveCampaign",
      text: error && error.message ? error.message : String(error)
    });
  }

  var ACTION_TITLES = { addToAutomation: "Add to Automation", sendCampaign: "Send Campaign" };

  /* After the dialog closes the record has a new note (and the grid rows may have synced):
     refresh what the user is looking at. Failures here never matter to the user. */
  function refreshAfterDialog(control) {
    try {
      if (isFormContext(control) && control.data && typeof control.data.refresh === "function") {
        return control.data.refresh(false);
      }
      if (control && typeof control.refresh === "function") {
        return control.refresh();
      }
    } catch (ignored) {
      /* nothing to refresh */
    }
    return undefined;
  }

  function openActionDialog(action, control, entityName) {
    var target;
    try {
      target = ActiveCampaignBridge.Ribbon.collectTarget(control, entityName);
    } catch (error) {
      return showError(error);
    }
    var payload = JSON.stringify({ action: action, entity: target.entity, ids: target.ids });
    return xrm().Navigation.navigateTo(
      { pageType: "webresource", webresourceName: ACTION_DIALOG, data: encodeURIComponent(payload) },
      {
        target: 2, width: { value: 40, unit: "%" }, height: { value: 60, unit: "%" }, position: 1,
        title: ACTION_TITLES[action]
      }
    ).then(function (result) {
      refreshAfterDialog(control);
      return result;
    });
  }

  /* Command: Add to Automation (forms: PrimaryControl, grids: SelectedControl). */
  ActiveCampaignBridge.Ribbon.addToAutomation = function (control, entityName) {
    return openActionDialog("addToAutomation", control, entityName);
  };

  /* Command: Send Campaign (forms: PrimaryControl, grids: SelectedControl). */
  ActiveCampaignBridge.Ribbon.sendCampaign = function (control, entityName) {
    return openActionDialog("sendCampaign", control, entityName);
  };

  /* Command: Marketing activity (forms only). Opens the timeline page in a side pane for the
     record; this is how the timeline reaches every main form without editing any form. */
  ActiveCampaignBridge.Ribbon.openMarketingActivity = function (primaryControl, entityName) {
    var target;
    try {
      target = ActiveCampaignBridge.Ribbon.collectTarget(primaryControl, entityName);
    } catch (error) {
      return showError(error);
    }
    var payload = JSON.stringify({ entity: target.entity, id: target.ids[0] });
    return xrm().Navigation.navigateTo(
      { pageType: "webresource", webresourceName: TIMELINE_PAGE, data: encodeURIComponent(payload) },
      { target: 2, position: 2, width: { value: 30, unit: "%" }, title: "Marketing activity" }
    );
  };

  function holdsRole(roleName) {
    var settings = xrm().Utility.getGlobalContext().userSettings;
    var wanted = roleName.toLowerCase();
    var found = false;
    eachItem(settings.roles, function (role) {
      if (role && typeof role.name === "string" && role.name.trim().toLowerCase() === wanted) {
        found = true;
      }
    });
    return found;
  }

  /* Enable rule (CustomRule): resolves true only for holders of the "ActiveCampaign User" role.
     userSettings.roles lists the roles assigned to the user directly (not through a team). */
  ActiveCampaignBridge.Ribbon.isActiveCampaignUser = function () {
    if (!roleCheck) {
      roleCheck = new Promise(function (resolve) {
        resolve(holdsRole(USER_ROLE_NAME));
      }).catch(function () {
        roleCheck = null;
        return false;
      });
    }
    return roleCheck;
  };

  /* Forgets the cached role answer (tests, or after an administrator changed the user's roles). */
  ActiveCampaignBridge.Ribbon.resetRoleCache = function () {
    roleCheck = null;
  };
})();
