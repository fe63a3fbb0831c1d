/*
 * ActiveCampaign Bridge: the small client every page uses to call the bridge.
 *
 * Web resource ac_/js/bridge_client.js. It needs nothing but the Dynamics client API:
 *   - configuration comes from two Dataverse environment variables, read at run time so one
 *     solution serves every organization: ac_BridgeBaseUrl (the bridge's https base URL) and
 *     ac_BridgeClientId (the bridge's Entra application (client) id);
 *   - every call carries "Authorization: Bearer <token>" from ActiveCampaignBridge.auth.getToken().
 *
 * Tokens: when the page is hosted by a host that provides tokens itself (the emulated Dynamics
 * web client used by the sandbox and the browser tests sets
 * `window.ActiveCampaignBridgeHost = { getToken(): Promise<string> }` on the app shell, i.e. the
 * web resource's parent window), getToken() asks it. Otherwise, in real Dynamics, it uses MSAL.js
 * (msal-browser, global `msal`): ssoSilent for api://<ac_BridgeClientId>/access_as_user with the
 * user's name as login hint, falling back to a popup when interaction is required. The library
 * is the solution's web resource ac_/js/vendor/msal-browser.min.js (@azure/msal-browser 5.30.0,
 * see the solution's README), loaded by every page before this file; a page without it gets a
 * rejection that says so. MSAL.js 5 returns Entra's answer through a redirect page that runs its
 * redirect bridge: ac_/html/signin.html, the redirect URI registered for the app. When sign-in
 * fails (Entra unreachable, popup blocked, ...) getToken() rejects with a message that starts
 * "Could not sign you in" and names the cause. Any page or test can replace the hook:
 *     ActiveCampaignBridge.auth.getToken = function () { return Promise.resolve("<token>"); };
 *
 * Every call also carries "X-Dynamics-Org-Url: <Xrm global context client URL>", which tells the
 * bridge which organization the page runs in (checked against the token's tenant).
 *
 * Errors: a failed call rejects with an Error whose message is the bridge's JSON error message
 * (or the HTTP status when the body is not JSON), ready to show to the user.
 */
var ActiveCampaignBridge = window.ActiveCampaignBridge || {};
window.ActiveCampaignBridge = ActiveCampaignBridge;
ActiveCampaignBridge.auth = ActiveCampaignBridge.auth || {};
ActiveCampaignBridge.client = ActiveCampaignBridge.client || {};

(function () {
  "use strict";

  var BASE_URL_VARIABLE = "ac_BridgeBaseUrl";
  var CLIENT_ID_VARIABLE = "ac_BridgeClientId";
  var configPromise = null;
  var msalApp = null;
  var msalReady = null;

  /* HTML web resources run in an iframe of the Dynamics page; the client API lives on the
     parent window there and on this window in forms and ribbon scripts. */
  function xrm() {
    var api = window.Xrm || (window.parent && window.parent.Xrm);
    if (!api) {
      throw new Error("Open this page inside Dynamics 365: the client API (Xrm) is not available.");
    }
    return api;
  }

  /* Reads one environment variable: its current value if set in this organization, otherwise
     the default value shipped with the definition, otherwise null. */
  ActiveCampaignBridge.client.getEnvironmentVariable = function (schemaName) {
    var query = "?$select=schemaname,defaultvalue" +
      "&$filter=schemaname eq '" + schemaName + "'" +
      "&$expand=environmentvariabledefinition_environmentvariablevalue($select=value)";
    return Promise.resolve().then(function () {
      return xrm().WebApi.retrieveMultipleRecords("environmentvariabledefinition", query);
    }).then(function (result) {
      var definition = result && result.entities && result.entities[0];
      if (!definition) {
        return null;
      }
      var values = definition.environmentvariabledefinition_environmentvariablevalue || [];
      if (values.length > 0 && values[0].value) {
        return values[0].value;
      }
      return definition.defaultvalue || null;
    });
  };

  /* {baseUrl, clientId}, read once per page. */
  ActiveCampaignBridge.client.getConfig = function () {
    if (!configPromise) {
      var read = ActiveCampaignBridge.client.getEnvironmentVariable;
      configPromise = Promise.all([read(BASE_URL_VARIABLE), read(CLIENT_ID_VARIABLE)])
        .then(function (values) {
          if (!values[0]) {
            throw new Error("The bridge address is not set: an administrator sets the " +
              "environment variable " + BASE_URL_VARIABLE + " (see the solution's README).");
          }
          return { baseUrl: values[0].replace(/\/+$/, ""), clientId: values[1] || "" };
        })
        .catch(function (error) {
          configPromise = null;
          throw error;
        });
    }
    return configPromise;
  };

  function userName() {
    try {
      return xrm().Utility.getGlobalContext().userSettings.userName;
    } catch (error) {
      return undefined;
    }
  }

  function msalToken(config) {
    var msal = window.msal;
    if (!msal || typeof msal.PublicClientApplication !== "function") {
      throw new Error("Sign-in is not available on this page: MSAL.js is not loaded.");
    }
    if (!config.clientId) {
      throw new Error("The bridge's application id is not set: an administrator sets the " +
        "environment variable " + CLIENT_ID_VARIABLE + ".");
    }
    if (!msalApp) {
      msalApp = new msal.PublicClientApplication({
        auth: {
          clientId: config.clientId,
          authority: "https://login.microsoftonline.com/organizations",
          /* One fixed, registered redirect page per organization (page URLs inside the app
             carry a changing cache prefix, so the current page cannot be registered); MSAL.js 5
             needs it to run the redirect bridge, which ac_/html/signin.html does. */
          redirectUri: window.location.origin + "/WebResources/ac_/html/signin.html"
        },
        cache: { cacheLocation: "localStorage" }
      });
      msalReady = typeof msalApp.initialize === "function" ? msalApp.initialize() : Promise.resolve();
    }
    var request = {
      scopes: ["api://" + config.clientId + "/access_as_user"],
      loginHint: userName()
    };
    return msalReady.then(function () {
      return msalApp.ssoSilent(request);
    }).catch(function (error) {
      if (error && (error.name === "InteractionRequiredAuthError" ||
        error.errorCode === "interaction_required" || error.errorCode === "login_required")) {
        return msalApp.acquireTokenPopup(request);
      }
      throw error;
    }).then(function (result) {
      return result.accessToken;
    }, function (error) {
      throw signInError(error);
    });
  }

  /* An MSAL.js failure as a message for the user, keeping MSAL's code for support. */
  function signInError(error) {
    var code = (error && error.errorCode) || "";
    var detail = (error && (error.errorMessage || error.message)) || String(error);
    var hint;
    if (code === "popup_window_error" || code === "empty_window_error") {
      hint = "the sign-in window was blocked: allow pop-ups for this site and try again";
    } else if (code === "user_cancelled") {
      hint = "the sign-in window was closed before sign-in finished";
    } else if (/timed?_?out|network|no_network_connectivity|endpoints_resolution_error/i.test(code)) {
      hint = "Microsoft Entra ID (login.microsoftonline.com) could not be reached or did not answer";
    } else {
      hint = "Microsoft Entra ID refused the sign-in";
    }
    var wrapped = new Error("Could not sign you in to the ActiveCampaign bridge: " + hint +
      (code ? " (" + code + ": " + detail + ")" : " (" + detail + ")") + ".");
    wrapped.cause = error;
    wrapped.errorCode = code || undefined;
    return wrapped;
  }

  /* A token provider offered by the hosting window (see the header comment), if any. */
  function hostTokenProvider() {
    var candidates = [window, window.parent, window.top];
    for (var i = 0; i < candidates.length; i += 1) {
      try {
        var host = candidates[i] && candidates[i].ActiveCampaignBridgeHost;
        if (host && typeof host.getToken === "function") {
          return host;
        }
      } catch (error) {
        /* a cross-origin parent: not a host we can use */
      }
    }
    return null;
  }

  /* The replaceable token hook: returns a Promise of a bearer token for the bridge. */
  if (typeof ActiveCampaignBridge.auth.getToken !== "function") {
    ActiveCampaignBridge.auth.getToken = function () {
      var host = hostTokenProvider();
      if (host) {
        return Promise.resolve(host.getToken());
      }
      return ActiveCampaignBridge.client.getConfig().then(msalToken);
    };
  }

  /* The organization's URL as Dynamics reports it, or null outside Dynamics. */
  ActiveCampaignBridge.client.orgUrl = function () {
    try {
      return xrm().Utility.getGlobalContext().getClientUrl();
    } catch (error) {
      return null;
    }
  };

  function errorMessage(response, body, text) {
    if (body && typeof body === "object") {
      var error = body.error;
      if (error && typeof error === "object" && error.message) {
        return String(error.message);
      }
      if (typeof error === "string" && error) {
        return body.message ? error + ": " + body.message : error;
      }
      if (body.message) {
        return String(body.message);
      }
      if (body.detail) {
        return String(body.detail);
      }
    }
    var status = "The bridge answered HTTP " + response.status +
      (response.statusText ? " " + response.statusText : "");
    return text && text.length < 200 && !/^\s*</.test(text) ? status + ": " + text : status;
  }

  /* Calls the bridge: method, a path below the base URL ("/api/v1/..."), an optional JSON body.
     Resolves with the parsed JSON answer (null for an empty body). */
  ActiveCampaignBridge.client.request = function (method, path, body) {
    return Promise.all([ActiveCampaignBridge.client.getConfig(), ActiveCampaignBridge.auth.getToken()])
      .then(function (results) {
        var headers = { Accept: "application/json", Authorization: "Bearer " + results[1] };
        var orgUrl = ActiveCampaignBridge.client.orgUrl();
        if (orgUrl) {
          headers["X-Dynamics-Org-Url"] = orgUrl;
        }
        var init = { method: method, headers: headers, credentials: "omit" };
        if (body !== undefined) {
          headers["Content-Type"] = "application/json";
          init.body = JSON.stringify(body);
        }
        return fetch(results[0].baseUrl + path, init);
      })
      .then(function (response) {
        return response.text().then(function (text) {
          var parsed = null;
          if (text) {
            try {
              parsed = JSON.parse(text);
            } catch (error) {
              parsed = null;
            }
          }
          if (!response.ok) {
            var failure = new Error(errorMessage(response, parsed, text));
            failure.status = response.status;
            failure.body = parsed;
            throw failure;
          }
          return parsed;
        });
      });
  };

  ActiveCampaignBridge.client.get = function (path) {
    return ActiveCampaignBridge.client.request("GET", path);
  };

  ActiveCampaignBridge.client.post = function (path, body) {
    return ActiveCampaignBridge.client.request("POST", path, body);
  };

  ActiveCampaignBridge.client.put = function (path, body) {
    return ActiveCampaignBridge.client.request("PUT", path, body);
  };

  ActiveCampaignBridge.client.del = function (path) {
    return ActiveCampaignBridge.client.request("DELETE", path);
  };
})();
