/*
 * The emulated Dynamics 365 web client: a faithful-enough global `Xrm` for web resources.
 *
 * Loaded by the shell pages of emulators/dataverse/webclient.py after they set
 * window.__EMULATED_WEB_CLIENT__ (client URL, user, roles, entity set names, the record form).
 * Web resources reach this `Xrm` as `parent.Xrm` from their iframe, as in Dynamics.
 */
(function () {
  "use strict";

  var ctx = window.__EMULATED_WEB_CLIENT__;
  var apiRoot = ctx.clientUrl + "/api/data/v" + ctx.apiVersion + "/";
  var tokens = {};

  function braced(id) {
    return "{" + String(id).replace(/[{}]/g, "").toUpperCase() + "}";
  }

  function bare(id) {
    return String(id).replace(/[{}]/g, "").toLowerCase();
  }

  /* A Dynamics client-API collection (Xrm.Collection.ItemCollection). */
  function collection(items) {
    return {
      forEach: function (fn) { items.forEach(function (item, i) { fn(item, i); }); },
      get: function (arg) {
        if (arg === undefined) { return items.slice(); }
        if (typeof arg === "number") { return items[arg] || null; }
        if (typeof arg === "function") { return items.filter(function (item, i) { return arg(item, i); }); }
        return items.filter(function (item) { return item.name === arg || item.id === arg; })[0] || null;
      },
      getLength: function () { return items.length; },
      getAll: function () { return items.slice(); }
    };
  }

  function token(resource) {
    var cached = tokens[resource];
    if (cached && cached.expires > Date.now() + 60000) {
      return Promise.resolve(cached.value);
    }
    return fetch("/_emulator/webclient/token?resource=" + encodeURIComponent(resource), {
      credentials: "same-origin"
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) {
          throw new Error(body.error_description || body.error || ("token: HTTP " + response.status));
        }
        tokens[resource] = { value: body.access_token, expires: Date.now() + body.expires_in * 1000 };
        return body.access_token;
      });
    });
  }

  /* The dev-host stand-in for MSAL.js: a user access token for the bridge's app registration.
     Left out when the shell was opened with tokenhost=0 (the page then uses MSAL.js). */
  if (ctx.tokenHost !== false) {
    window.ActiveCampaignBridgeHost = {
      getToken: function () { return token("bridge"); }
    };
  }

  function entitySet(logicalName) {
    var set = ctx.entitySets[logicalName];
    if (!set) {
      return Promise.reject(xrmError(0x80040217, "Could not find entity with name '" + logicalName + "'."));
    }
    return set;
  }

  function xrmError(code, message) {
    var error = new Error(message);
    error.errorCode = code;
    error.message = message;
    return error;
  }

  function webApi(method, path, body, headers) {
    return token("dataverse").then(function (accessToken) {
      var init = {
        method: method,
        headers: Object.assign({
          Accept: "application/json",
          Authorization: "Bearer " + accessToken,
          "OData-MaxVersion": "4.0",
          "OData-Version": "4.0"
        }, headers || {})
      };
      if (body !== undefined) {
        init.headers["Content-Type"] = "application/json; charset=utf-8";
        init.body = JSON.stringify(body);
      }
      return fetch(path.indexOf("http") === 0 ? path : apiRoot + path, init);
    }).then(function (response) {
      return response.text().then(function (text) {
        var parsed = text ? JSON.parse(text) : null;
        if (!response.ok) {
          var err = parsed && parsed.error ? parsed.error : {};
          throw xrmError(parseInt(err.code, 16) || response.status, err.message || ("HTTP " + response.status));
        }
        return { response: response, body: parsed };
      });
    });
  }

  function options(text) {
    if (!text) { return ""; }
    return text.charAt(0) === "?" ? text : "?" + text;
  }

  var WebApi = {
    retrieveMultipleRecords: function (entityLogicalName, query, maxPageSize) {
      var set = entitySet(entityLogicalName);
      if (typeof set !== "string") { return set; }
      var headers = maxPageSize ? { Prefer: "odata.maxpagesize=" + maxPageSize } : undefined;
      var path = query && query.indexOf(apiRoot) === 0 ? query : set + options(query);
      return webApi("GET", path, undefined, headers).then(function (result) {
        var out = { entities: result.body.value || [] };
        if (result.body["@odata.nextLink"]) { out.nextLink = result.body["@odata.nextLink"]; }
        return out;
      });
    },
    retrieveRecord: function (entityLogicalName, id, query) {
      var set = entitySet(entityLogicalName);
      if (typeof set !== "string") { return set; }
      return webApi("GET", set + "(" + bare(id) + ")" + options(query)).then(function (result) {
        return result.body;
      });
    },
    createRecord: function (entityLogicalName, data) {
      var set = entitySet(entityLogicalName);
      if (typeof set !== "string") { return set; }
      return webApi("POST", set, data).then(function (result) {
        var location = result.response.headers.get("OData-EntityId") || "";
        var match = /\(([0-9a-fA-F-]{36})\)$/.exec(location);
        return { entityType: entityLogicalName, id: match ? match[1] : null };
      });
    },
    updateRecord: function (entityLogicalName, id, data) {
      var set = entitySet(entityLogicalName);
      if (typeof set !== "string") { return set; }
      return webApi("PATCH", set + "(" + bare(id) + ")", data).then(function () {
        return { entityType: entityLogicalName, id: bare(id) };
      });
    },
    deleteRecord: function (entityLogicalName, id) {
      var set = entitySet(entityLogicalName);
      if (typeof set !== "string") { return set; }
      return webApi("DELETE", set + "(" + bare(id) + ")").then(function () {
        return { entityType: entityLogicalName, id: bare(id) };
      });
    }
  };

  var roles = ctx.roles.map(function (role) {
    return { id: bare(role.id), name: role.name, entityType: "role" };
  });
  var globalContext = {
    getClientUrl: function () { return ctx.clientUrl; },
    getVersion: function () { return ctx.version; },
    getCurrentAppUrl: function () { return ctx.clientUrl + "/main.aspx"; },
    organizationSettings: {
      uniqueName: ctx.orgUniqueName,
      organizationId: braced(ctx.organizationId),
      organizationTenant: ctx.tenantId
    },
    userSettings: {
      userId: braced(ctx.userId),
      userName: ctx.userName,
      roles: collection(roles),
      securityRoles: roles.map(function (role) { return role.id; }),
      languageId: 1033
    }
  };

  /* --- dialogs ------------------------------------------------------------------------------ */
  function overlay() {
    var element = document.createElement("div");
    element.className = "emu-overlay";
    document.body.appendChild(element);
    return element;
  }

  function size(value, fallback, axis) {
    if (value === undefined || value === null) { return fallback; }
    if (typeof value === "number") { return value + "px"; }
    if (value.unit === "%") { return value.value + (axis === "w" ? "vw" : "vh"); }
    return value.value + "px";
  }

  function webResourceUrl(name, data) {
    return "/WebResources/" + name + (data !== undefined && data !== null ?
      "?data=" + encodeURIComponent(data) : "");
  }

  function openDialogFrame(title, src, navigationOptions) {
    return new Promise(function (resolve) {
      var back = overlay();
      var dialog = document.createElement("div");
      dialog.className = "emu-dialog";
      dialog.setAttribute("role", "dialog");
      dialog.setAttribute("aria-label", title);
      dialog.style.width = size(navigationOptions.width, "600px", "w");
      dialog.style.height = size(navigationOptions.height, "70vh", "h");
      if (navigationOptions.position === 2) {
        back.style.justifyContent = "flex-end";
        dialog.style.height = "100vh";
      }
      var header = document.createElement("header");
      var heading = document.createElement("h2");
      heading.textContent = title;
      var close = document.createElement("button");
      close.type = "button";
      close.setAttribute("data-id", "dialogCloseIconButton");
      close.setAttribute("aria-label", "Close");
      close.textContent = "\u2715";
      header.appendChild(heading);
      header.appendChild(close);
      var frame = document.createElement("iframe");
      frame.title = title;
      frame.src = src;
      dialog.appendChild(header);
      dialog.appendChild(frame);
      back.appendChild(dialog);
      var done = false;
      function finish() {
        if (done) { return; }
        done = true;
        back.remove();
        resolve({});
      }
      close.addEventListener("click", finish);
      frame.addEventListener("load", function () {
        try { frame.contentWindow.close = finish; } catch (ignored) { /* cross-origin */ }
      });
    });
  }

  function messageDialog(title, text, buttons) {
    return new Promise(function (resolve) {
      var back = overlay();
      var dialog = document.createElement("div");
      dialog.className = "emu-dialog";
      dialog.setAttribute("role", "alertdialog");
      dialog.setAttribute("aria-label", title || "Message");
      dialog.style.width = "450px";
      var header = document.createElement("header");
      var heading = document.createElement("h2");
      heading.textContent = title || "";
      header.appendChild(heading);
      var body = document.createElement("div");
      body.className = "emu-text";
      body.textContent = text || "";
      var footer = document.createElement("footer");
      buttons.forEach(function (spec) {
        var button = document.createElement("button");
        button.type = "button";
        button.textContent = spec.label;
        button.addEventListener("click", function () {
          back.remove();
          resolve(spec.result);
        });
        footer.appendChild(button);
      });
      dialog.appendChild(header);
      dialog.appendChild(body);
      dialog.appendChild(footer);
      back.appendChild(dialog);
      footer.firstChild.focus();
    });
  }

  var Navigation = {
    navigateTo: function (pageInput, navigationOptions) {
      navigationOptions = navigationOptions || {};
      if (pageInput.pageType === "webresource") {
        var src = webResourceUrl(pageInput.webresourceName, pageInput.data);
        if (navigationOptions.target === 2) {
          return openDialogFrame(navigationOptions.title || pageInput.webresourceName, src, navigationOptions);
        }
        window.location.href = "/main.aspx?pagetype=webresource&webresourceName=" +
          encodeURIComponent(pageInput.webresourceName) +
          (pageInput.data ? "&data=" + encodeURIComponent(pageInput.data) : "");
        return Promise.resolve();
      }
      if (pageInput.pageType === "entityrecord") {
        return Navigation.openForm({ entityName: pageInput.entityName, entityId: pageInput.entityId });
      }
      return Promise.reject(xrmError(0x80040203, "The emulated web client cannot open pageType " + pageInput.pageType));
    },
    openForm: function (entityFormOptions) {
      window.location.href = "/main.aspx?pagetype=entityrecord&etn=" +
        encodeURIComponent(entityFormOptions.entityName) + "&id=" + bare(entityFormOptions.entityId || "");
      return Promise.resolve({ savedEntityReference: [] });
    },
    openWebResource: function (webResourceName, windowOptions, data) {
      window.open(webResourceUrl(webResourceName, data), "_blank");
    },
    openAlertDialog: function (alertStrings) {
      alertStrings = alertStrings || {};
      return messageDialog(alertStrings.title, alertStrings.text,
        [{ label: alertStrings.confirmButtonLabel || "OK", result: undefined }]);
    },
    openConfirmDialog: function (confirmStrings) {
      confirmStrings = confirmStrings || {};
      return messageDialog(confirmStrings.title, confirmStrings.text, [
        { label: confirmStrings.confirmButtonLabel || "OK", result: { confirmed: true } },
        { label: confirmStrings.cancelButtonLabel || "Cancel", result: { confirmed: false } }
      ]);
    },
    openErrorDialog: function (errorOptions) {
      errorOptions = errorOptions || {};
      return messageDialog("Error", errorOptions.message || errorOptions.details,
        [{ label: "OK", result: undefined }]);
    }
  };

  window.Xrm = {
    Utility: {
      getGlobalContext: function () { return globalContext; },
      showProgressIndicator: function () {},
      closeProgressIndicator: function () {}
    },
    Navigation: Navigation,
    WebApi: WebApi,
    Page: {}
  };

  /* --- the record form host ------------------------------------------------------------------ */
  function formContext(form) {
    var attributes = {};
    Object.keys(form.attributes).forEach(function (name) {
      var value = form.attributes[name];
      attributes[name] = {
        getName: function () { return name; },
        getValue: function () { return value; },
        setValue: function (v) { value = v; }
      };
    });
    return {
      data: {
        entity: {
          getId: function () { return braced(form.id); },
          getEntityName: function () { return form.entityName; },
          getPrimaryAttributeValue: function () { return form.primaryName; },
          getIsDirty: function () { return false; }
        },
        refresh: function () { return Promise.resolve(); },
        save: function () { return Promise.resolve(); }
      },
      ui: {
        getFormType: function () { return 2; },
        setFormNotification: function () { return true; },
        clearFormNotification: function () { return true; }
      },
      getAttribute: function (name) { return attributes[name] || null; },
      getControl: function (name) {
        var frame = document.getElementById(name);
        if (!frame) { return null; }
        return { getContentWindow: function () { return Promise.resolve(frame.contentWindow); } };
      }
    };
  }

  function resolveFunction(path) {
    return path.split(".").reduce(function (obj, key) { return obj ? obj[key] : undefined; }, window);
  }

  var loaded = {};
  function loadLibrary(library) {
    var name = library.replace(/^\$webresource:/, "");
    if (!loaded[name]) {
      loaded[name] = new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = "/WebResources/" + name;
        script.onload = resolve;
        script.onerror = function () { reject(new Error("could not load " + name)); };
        document.head.appendChild(script);
      });
    }
    return loaded[name];
  }

  function crmParameter(value, form, primaryControl) {
    switch (value) {
      case "PrimaryControl": return primaryControl;
      case "PrimaryEntityTypeName": return form.entityName;
      case "FirstPrimaryItemId": return braced(form.id);
      case "PrimaryItemIds": return [braced(form.id)];
      case "UserLcid": case "OrgLcid": return 1033;
      case "OrgName": return ctx.orgUniqueName;
      default: return undefined;
    }
  }

  function setUpForm(form) {
    var primaryControl = formContext(form);
    var bar = document.getElementById("emu-commandbar");
    form.commands.forEach(function (command) {
      var button = document.createElement("button");
      button.type = "button";
      button.id = command.id;
      button.textContent = command.label;
      button.disabled = command.enable_rules.length > 0;
      bar.appendChild(button);
      loadLibrary(command.library).then(function () {
        return Promise.all(command.enable_rules.map(function (rule) {
          return loadLibrary(rule.library).then(function () {
            var fn = resolveFunction(rule.function);
            return fn ? fn() : false;
          });
        }));
      }).then(function (results) {
        button.disabled = !results.every(Boolean);
      }).catch(function (error) {
        button.title = String(error && error.message);
      });
      button.addEventListener("click", function () {
        var fn = resolveFunction(command.function);
        var args = command.parameters.map(function (param) {
          return param.kind === "CrmParameter" ?
            crmParameter(param.value, form, primaryControl) : param.value;
        });
        if (fn) { fn.apply(window, args); }
      });
    });
  }

  if (ctx.form) {
    document.addEventListener("DOMContentLoaded", function () { setUpForm(ctx.form); });
  }
})();
