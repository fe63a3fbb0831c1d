/*
 * ActiveCampaign Bridge: the admin pages of the ActiveCampaign app (web resource ac_/js/admin.js).
 *
 * Loaded after ac_/js/bridge_client.js and ac_/js/pages.js by the admin pages; each page names
 * itself in <body data-page="..."> and this file runs that page's controller. Every page first
 * asks the bridge who the user is (GET /api/v1/me): someone without the ActiveCampaign Admin or
 * System Administrator role sees a "not allowed" message instead of the page. The server checks
 * the same roles on every call; this is only so the page does not offer what will be refused.
 *
 * Errors from the bridge arrive as {"error": {"code", "message", "fields": {name: [messages]}}};
 * field errors are shown beside the input whose data-field matches, the rest in the page's
 * role="alert" area.
 */
var ActiveCampaignBridge = window.ActiveCampaignBridge || {};
window.ActiveCampaignBridge = ActiveCampaignBridge;
ActiveCampaignBridge.admin = ActiveCampaignBridge.admin || {};

(function () {
  "use strict";

  var client = ActiveCampaignBridge.client;
  var admin = ActiveCampaignBridge.admin;

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") {
        node.textContent = attrs[key];
      } else if (key.indexOf("on") === 0) {
        node.addEventListener(key.slice(2), attrs[key]);
      } else if (attrs[key] !== undefined && attrs[key] !== null && attrs[key] !== false) {
        node.setAttribute(key, attrs[key] === true ? "" : attrs[key]);
      }
    });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }
  admin.el = el;

  function show(node, visible) {
    if (node) {
      node.hidden = !visible;
    }
  }

  /* The page-level message area (role=alert or role=status). */
  admin.message = function (text, kind) {
    var box = $("page-message");
    if (!box) {
      return;
    }
    box.textContent = text || "";
    box.className = "ac-message" + (kind ? " ac-message-" + kind : "");
    box.setAttribute("role", kind === "error" ? "alert" : "status");
    show(box, Boolean(text));
  };

  admin.clearFieldErrors = function (scope) {
    (scope || document).querySelectorAll(".ac-field-error").forEach(function (node) {
      node.textContent = "";
      node.hidden = true;
    });
    (scope || document).querySelectorAll("[aria-invalid]").forEach(function (node) {
      node.removeAttribute("aria-invalid");
    });
  };

  /* Shows each field error beside its input; returns true if any field matched. */
  admin.showFieldErrors = function (error, scope) {
    var fields = error && error.body && error.body.error && error.body.error.fields;
    var matched = false;
    if (!fields) {
      return false;
    }
    function flatten(value) {
      if (Array.isArray(value)) {
        return value.map(flatten).join(" ");
      }
      if (value && typeof value === "object") {
        return Object.keys(value).map(function (key) { return flatten(value[key]); }).join(" ");
      }
      return String(value);
    }
    Object.keys(fields).forEach(function (name) {
      var target = (scope || document).querySelector('[data-error-for="' + name + '"]');
      var input = (scope || document).querySelector('[data-field="' + name + '"]');
      if (target) {
        target.textContent = flatten(fields[name]);
        target.hidden = false;
        matched = true;
      }
      if (input) {
        input.setAttribute("aria-invalid", "true");
      }
    });
    return matched;
  };

  admin.fail = function (error) {
    var matched = admin.showFieldErrors(error);
    admin.message(matched ? "Please correct the highlighted fields." : error.message, "error");
  };

  /* Resolves with /me for admins; shows the "not allowed" panel otherwise. */
  admin.requireAdmin = function () {
    return client.get("/api/v1/me").then(function (me) {
      if (!me.is_admin) {
        show($("page-content"), false);
        show($("not-allowed"), true);
        throw Object.assign(new Error("not allowed"), { handled: true });
      }
      return me;
    });
  };

  admin.formatDate = function (value) {
    if (!value) {
      return "";
    }
    var date = new Date(value);
    return isNaN(date.getTime()) ? String(value) : date.toLocaleString();
  };

  function confirmDialog(title, text, confirmLabel) {
    var xrm = window.Xrm || (window.parent && window.parent.Xrm);
    if (xrm && xrm.Navigation && xrm.Navigation.openConfirmDialog) {
      return xrm.Navigation.openConfirmDialog(
        { title: title, text: text, confirmButtonLabel: confirmLabel, cancelButtonLabel: "Cancel" }
      ).then(function (result) { return Boolean(result && result.confirmed); });
    }
    return Promise.resolve(window.confirm(text));
  }
  admin.confirm = confirmDialog;

  /* --- Settings / Connect ------------------------------------------------------------------ */
  function renderConnection(status) {
    show($("connect-form"), !status.connected);
    show($("connected-panel"), status.connected);
    if (status.connected) {
      $("account-url").textContent = status.ac_api_url || "";
      $("account-user").textContent = status.ac_account || "";
      $("key-last4").textContent = "\u2022\u2022\u2022\u2022" + (status.ac_api_key_last4 || "");
      $("connected-by").textContent = status.connected_by || "";
      $("connected-at").textContent = admin.formatDate(status.connected_at);
    }
  }

  function settingsPage() {
    var form = $("connect-form");
    var busy = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (busy) {
        return;
      }
      admin.clearFieldErrors(form);
      admin.message("");
      var body = { api_url: $("api-url").value.trim(), api_key: $("api-key").value.trim() };
      confirmDialog("Connect ActiveCampaign",
        "Connect this organization to the ActiveCampaign account at " + body.api_url +
        "? The bridge registers webhooks in Dynamics and in ActiveCampaign.", "Connect")
        .then(function (confirmed) {
          if (!confirmed) {
            return;
          }
          busy = true;
          $("connect-button").disabled = true;
          admin.message("Checking the API URL and key with ActiveCampaign\u2026");
          return client.post("/api/v1/admin/connection", body).then(function (status) {
            $("api-key").value = "";
            renderConnection(status);
            admin.message("Connected to ActiveCampaign.", "success");
          }, admin.fail);
        })
        .then(function () {
          busy = false;
          $("connect-button").disabled = false;
        });
    });
    $("disconnect-button").addEventListener("click", function () {
      confirmDialog("Disconnect ActiveCampaign",
        "Disconnect from ActiveCampaign? Sync stops and both webhooks are removed.", "Disconnect")
        .then(function (confirmed) {
          if (!confirmed) {
            return;
          }
          return client.del("/api/v1/admin/connection").then(function (status) {
            renderConnection(status);
            admin.message("Disconnected from ActiveCampaign.", "success");
          }, admin.fail);
        });
    });
    return client.get("/api/v1/admin/connection").then(renderConnection);
  }

  /* --- Sync Settings ----------------------------------------------------------------------- */
  function duration(seconds) {
    if (seconds === null || seconds === undefined) {
      return "estimating\u2026";
    }
    seconds = Math.round(seconds);
    if (seconds < 60) {
      return seconds + " s";
    }
    var minutes = Math.floor(seconds / 60);
    return minutes < 60 ? minutes + " min " + (seconds % 60) + " s" :
      Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  var STATUS_TEXT = {
    never: "Not run yet: it starts when global sync is first switched on.",
    queued: "Queued: waiting for a worker.",
    running: "Running.",
    paused: "Paused while global sync is off.",
    done: "Finished.",
    failed: "Failed."
  };

  function renderProgress(progress) {
    var bar = $("initial-progress");
    var total = progress.total || 0;
    var processed = (progress.done || 0) + (progress.failed || 0);
    bar.max = Math.max(total, 1);
    bar.value = Math.min(processed, bar.max);
    bar.setAttribute("aria-valuenow", String(processed));
    bar.setAttribute("aria-valuemax", String(total));
    $("initial-status").textContent = STATUS_TEXT[progress.status] || progress.status;
    $("initial-counts").textContent = processed + " of " + total + " records" +
      (progress.failed ? " (" + progress.failed + " failed)" : "");
    $("initial-rate").textContent = (progress.rate_per_s || 0) + " records/s";
    $("initial-eta").textContent = progress.status === "done" ? "done" : duration(progress.eta_s);
    if (progress.error) {
      $("initial-status").textContent += " " + progress.error;
    }
    show($("start-initial"), progress.status === "never" || progress.status === "failed");
  }

  function syncSettingsPage() {
    var toggle = $("global-sync");
    var frequency = $("frequency");
    var timer = null;

    function render(settings) {
      toggle.checked = settings.global_sync_enabled;
      $("global-sync-state").textContent = settings.global_sync_enabled ? "On" : "Off";
      frequency.value = String(settings.sync_frequency_hours);
      renderProgress(settings.initial_sync);
      var active = ["queued", "running"].indexOf(settings.initial_sync.status) >= 0;
      if (active && !timer) {
        timer = window.setInterval(poll, 1000);
      } else if (!active && timer) {
        window.clearInterval(timer);
        timer = null;
      }
    }

    function poll() {
      client.get("/api/v1/admin/sync-settings").then(render, function (error) {
        admin.message(error.message, "error");
      });
    }

    function save(changes, done) {
      admin.clearFieldErrors();
      return client.put("/api/v1/admin/sync-settings", changes).then(function (settings) {
        render(settings);
        admin.message(done, "success");
      }, function (error) {
        admin.fail(error);
        poll();
      });
    }

    toggle.addEventListener("change", function () {
      save({ global_sync_enabled: toggle.checked },
        toggle.checked ? "Global sync is on." : "Global sync is off: nothing is written to ActiveCampaign.");
    });
    $("save-frequency").addEventListener("click", function () {
      save({ sync_frequency_hours: parseInt(frequency.value, 10) }, "Job frequency saved.");
    });
    $("start-initial").addEventListener("click", function () {
      client.post("/api/v1/admin/sync-settings/initial-sync", {}).then(function () {
        poll();
      }, admin.fail);
    });
    return client.get("/api/v1/admin/sync-settings").then(render);
  }

  /* --- User Management --------------------------------------------------------------------- */
  function userManagementPage() {
    var input = $("user-search");
    var list = $("user-suggestions");
    var addButton = $("add-user");
    var chosen = null;
    var timer = null;
    var latest = 0;
    var active = -1;

    function closeSuggestions() {
      list.textContent = "";
      show(list, false);
      input.setAttribute("aria-expanded", "false");
      active = -1;
    }

    function choose(person) {
      chosen = person;
      input.value = person.name;
      addButton.disabled = person.has_role;
      closeSuggestions();
      if (person.has_role) {
        admin.message(person.name + " already holds the ActiveCampaign User role.");
      }
    }

    function highlight(index) {
      var items = list.querySelectorAll("li");
      items.forEach(function (item, i) { item.setAttribute("aria-selected", String(i === index)); });
      active = index;
    }

    function suggest(people) {
      list.textContent = "";
      if (!people.length) {
        list.appendChild(el("li", { role: "option", "aria-disabled": "true", text: "No matching users" }));
      }
      people.forEach(function (person, index) {
        list.appendChild(el("li", {
          role: "option", id: "suggestion-" + index, "aria-selected": "false",
          onmousedown: function (event) { event.preventDefault(); choose(person); }
        }, [person.name, el("span", {
          "class": "ac-sub", text: person.has_role ? "already added" : (person.email || "")
        })]));
      });
      show(list, true);
      input.setAttribute("aria-expanded", "true");
      list.people = people;
    }

    function search() {
      var text = input.value.trim();
      var ticket = ++latest;
      if (!text) {
        closeSuggestions();
        return;
      }
      client.get("/api/v1/admin/users/search?q=" + encodeURIComponent(text)).then(function (body) {
        if (ticket === latest) {
          suggest(body.users);
        }
      }, admin.fail);
    }

    input.addEventListener("input", function () {
      chosen = null;
      addButton.disabled = true;
      window.clearTimeout(timer);
      timer = window.setTimeout(search, 200);
    });
    input.addEventListener("keydown", function (event) {
      var people = list.people || [];
      if (list.hidden || !people.length) {
        return;
      }
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        var step = event.key === "ArrowDown" ? 1 : -1;
        highlight((active + step + people.length) % people.length);
      } else if (event.key === "Enter" && active >= 0) {
        event.preventDefault();
        choose(people[active]);
      } else if (event.key === "Escape") {
        closeSuggestions();
      }
    });
    input.addEventListener("blur", function () { window.setTimeout(closeSuggestions, 150); });

    function render(body) {
      var rows = $("user-rows");
      rows.textContent = "";
      body.users.forEach(function (person) {
        rows.appendChild(el("tr", {}, [
          el("td", { text: person.name }),
          el("td", { text: person.email || "" }),
          el("td", {}, [el("button", {
            type: "button", "class": "ac-danger", text: "Remove",
            "aria-label": "Remove " + person.name,
            onclick: function () { remove(person); }
          })])
        ]));
      });
      show($("no-users"), body.users.length === 0);
    }

    function remove(person) {
      confirmDialog("Remove user", "Remove the ActiveCampaign User role from " + person.name + "?",
        "Remove").then(function (confirmed) {
        if (!confirmed) {
          return;
        }
        return client.del("/api/v1/admin/users/" + encodeURIComponent(person.systemuser_id))
          .then(function (body) {
            render(body);
            admin.message(person.name + " no longer holds the ActiveCampaign User role.", "success");
          }, admin.fail);
      });
    }

    addButton.addEventListener("click", function () {
      if (!chosen) {
        return;
      }
      var person = chosen;
      admin.clearFieldErrors();
      addButton.disabled = true;
      client.post("/api/v1/admin/users", { systemuser_id: person.systemuser_id }).then(function (body) {
        render(body);
        chosen = null;
        input.value = "";
        admin.message(person.name + " now holds the ActiveCampaign User role.", "success");
      }, function (error) {
        addButton.disabled = false;
        admin.fail(error);
      });
    });
    return client.get("/api/v1/admin/users").then(render);
  }

  /* A trash-can icon (inline SVG: no icon font or emoji needed). */
  function trashIcon() {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 16 16");
    svg.setAttribute("width", "16");
    svg.setAttribute("height", "16");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", "M6 1h4l1 1h3v2H2V2h3l1-1zM3 5h10l-1 10H4L3 5zm3 2v6h1V7H6zm3 " +
      "0v6h1V7H9z");
    svg.appendChild(path);
    return svg;
  }

  /* --- Data Configuration ------------------------------------------------------------------ */
  var ENTITY_TEXT = {
    lead: { title: "Leads", plural: "leads" },
    contact: { title: "Contacts", plural: "contacts" }
  };
  var OPERATOR_TEXT = {
    eq: "equals", ne: "does not equal", contains: "contains", begins_with: "begins with",
    is_empty: "is empty", is_not_empty: "is not empty", gt: "greater than", lt: "less than",
    on: "on", before: "before", after: "after"
  };
  var DIRECTION_TEXT = {
    both: "Both ways", to_activecampaign: "To ActiveCampaign only", to_dynamics: "To Dynamics only"
  };
  var CHOICE_TYPES = ["Picklist", "State", "Status"];
  var NUMBER_TYPES = ["Integer", "BigInt", "Double", "Decimal", "Money"];

  function options(select, items, selected) {
    items.forEach(function (item) {
      var option = el("option", { value: item.value, text: item.label });
      option.selected = String(item.value) === String(selected);
      select.appendChild(option);
    });
    return select;
  }

  function errorText(value) {
    if (!value) {
      return "";
    }
    return Array.isArray(value) ? value.join(" ") : Object.keys(value).map(function (key) {
      return errorText(value[key]);
    }).join(" ");
  }

  function errorLine(messages) {
    var text = errorText(messages);
    return el("p", { "class": "ac-field-error", role: "alert", text: text, hidden: !text });
  }

  function entitySection(entity, config, meta) {
    var names = ENTITY_TEXT[entity];
    var state = JSON.parse(JSON.stringify(config));
    var errors = {};
    var columns = {};
    meta.dynamics.forEach(function (column) { columns[column.name] = column; });
    var acFields = {};
    meta.activecampaign.forEach(function (field) { acFields[field.id] = field; });
    var section = el("section", { "class": "ac-entity", id: "entity-" + entity,
      "aria-labelledby": entity + "-title" });
    var body = el("div");

    function columnLabel(column) {
      return column.label + " (" + column.name + ")";
    }

    function valueInput(criterion, index) {
      var column = columns[criterion.field];
      var label = "Criterion " + (index + 1) + " value";
      if (!column || criterion.operator === "is_empty" || criterion.operator === "is_not_empty") {
        return null;
      }
      var input;
      if (CHOICE_TYPES.indexOf(column.type) >= 0 || column.type === "Boolean") {
        var items = column.type === "Boolean" ?
          [{ value: "true", label: "Yes" }, { value: "false", label: "No" }] : column.options;
        input = options(el("select", { "aria-label": label }),
          [{ value: "", label: "Choose a value" }].concat(items),
          criterion.value === null || criterion.value === undefined ? "" : criterion.value);
      } else {
        var type = column.type === "DateTime" ? "date" :
          NUMBER_TYPES.indexOf(column.type) >= 0 ? "number" : "text";
        input = el("input", { type: type, "aria-label": label });
        input.value = criterion.value === null || criterion.value === undefined ? "" : criterion.value;
      }
      input.addEventListener("change", function () { criterion.value = input.value; });
      input.addEventListener("input", function () { criterion.value = input.value; });
      return input;
    }

    function criteriaBlock() {
      var block = el("div", { "class": "ac-criteria", "aria-label": "Criteria" });
      block.appendChild(el("p", { "class": "ac-hint",
        text: "A record syncs when all of these criteria hold." }));
      var rowErrors = errors.criteria || {};
      state.criteria.forEach(function (criterion, index) {
        var fieldSelect = options(el("select", { "aria-label": "Criterion " + (index + 1) + " field" }),
          [{ value: "", label: "Choose a column" }].concat(meta.dynamics.map(function (column) {
            return { value: column.name, label: columnLabel(column) };
          })), criterion.field);
        var ops = (meta.operators[criterion.field] || []).map(function (op) {
          return { value: op, label: OPERATOR_TEXT[op] || op };
        });
        var opSelect = options(el("select", { "aria-label": "Criterion " + (index + 1) + " operator" }),
          ops, criterion.operator);
        fieldSelect.addEventListener("change", function () {
          criterion.field = fieldSelect.value;
          criterion.operator = (meta.operators[criterion.field] || ["eq"])[0];
          criterion.value = null;
          render();
        });
        opSelect.addEventListener("change", function () {
          criterion.operator = opSelect.value;
          render();
        });
        var value = valueInput(criterion, index);
        var row = el("div", { "class": "ac-row", "data-criterion": String(index) },
          [fieldSelect, opSelect].concat(value ? [value] : []).concat([
            el("button", { type: "button", "class": "ac-icon", title: "Remove criterion",
              "aria-label": "Remove criterion " + (index + 1),
              onclick: function () { state.criteria.splice(index, 1); render(); } }, [trashIcon()])
          ]));
        block.appendChild(row);
        block.appendChild(errorLine(rowErrors[String(index)]));
      });
      block.appendChild(errorLine(rowErrors._schema));
      block.appendChild(el("button", { type: "button", text: "Add criterion",
        onclick: function () {
          state.criteria.push({ field: "", operator: "eq", value: null });
          render();
        } }));
      return block;
    }

    function optionMapList(mapping, column, field) {
      var dynOptions = column.type === "Boolean" ?
        [{ value: "true", label: "Yes" }, { value: "false", label: "No" }] : column.options;
      if (!dynOptions.length || !field.options.length) {
        return null;
      }
      var list = el("ul", { "class": "ac-option-map", "aria-label": field.title + " options" });
      dynOptions.forEach(function (option) {
        var select = options(el("select", {
          "aria-label": field.title + " option for " + option.label
        }), [{ value: "", label: "Not mapped" }].concat(field.options.map(function (o) {
          return { value: o.value, label: o.label || o.value };
        })), mapping.option_map[option.value] || "");
        select.addEventListener("change", function () {
          if (select.value) {
            mapping.option_map[option.value] = select.value;
          } else {
            delete mapping.option_map[option.value];
          }
        });
        list.appendChild(el("li", {}, [el("span", { text: option.label + " \u2192" }), select]));
      });
      return list;
    }

    function mappingTable() {
      var rowErrors = errors.field_mappings || {};
      var table = el("table", { "class": "ac-table", "aria-label": names.title + " field mapping" });
      table.appendChild(el("thead", {}, [el("tr", {}, [
        el("th", { scope: "col", text: "ActiveCampaign field" }),
        el("th", { scope: "col", text: "Dynamics column" }),
        el("th", { scope: "col", text: "Direction" }),
        el("th", { scope: "col" }, [el("span", { "class": "ac-visually-hidden", text: "Actions" })])
      ])]));
      var tbody = el("tbody");
      state.field_mappings.forEach(function (mapping, index) {
        var field = acFields[mapping.ac_field] ||
          { id: mapping.ac_field, title: mapping.ac_field, type: "?", standard: false, options: [] };
        mapping.option_map = mapping.option_map || {};
        var compatible = (meta.compatibility[mapping.ac_field] || []).slice();
        if (mapping.dynamics_column && compatible.indexOf(mapping.dynamics_column) < 0) {
          compatible.push(mapping.dynamics_column);
        }
        var columnSelect = options(el("select", { "aria-label": field.title + " Dynamics column" }),
          [{ value: "", label: "Choose a column" }].concat(compatible.map(function (name) {
            return { value: name, label: columns[name] ? columnLabel(columns[name]) : name };
          })), mapping.dynamics_column);
        columnSelect.addEventListener("change", function () {
          mapping.dynamics_column = columnSelect.value;
          mapping.option_map = {};
          render();
        });
        var direction = options(el("select", { "aria-label": field.title + " direction" }),
          Object.keys(DIRECTION_TEXT).map(function (key) {
            return { value: key, label: DIRECTION_TEXT[key] };
          }), mapping.direction || "both");
        direction.addEventListener("change", function () { mapping.direction = direction.value; });
        var column = columns[mapping.dynamics_column];
        var optionMap = column ? optionMapList(mapping, column, field) : null;
        var problem = rowErrors[String(index)];
        tbody.appendChild(el("tr", { "data-mapping": mapping.ac_field,
          "class": problem ? "ac-error-row" : null }, [
          el("td", {}, [field.title, el("span", { "class": "ac-sub",
            text: field.standard ? " standard" : " " + field.type })]),
          el("td", {}, [columnSelect].concat(optionMap ? [optionMap] : [])),
          el("td", {}, [direction]),
          el("td", {}, mapping.ac_field === "email" ? [] : [el("button", {
            type: "button", "class": "ac-icon", title: "Remove mapping",
            "aria-label": "Remove " + field.title,
            onclick: function () { state.field_mappings.splice(index, 1); render(); }
          }, [trashIcon()])])
        ]));
        if (problem) {
          tbody.appendChild(el("tr", {}, [el("td", { colspan: "4" }, [errorLine(problem)])]));
        }
      });
      table.appendChild(tbody);
      return table;
    }

    function picker() {
      var mapped = state.field_mappings.map(function (m) { return m.ac_field; });
      var free = meta.activecampaign.filter(function (field) {
        return mapped.indexOf(field.id) < 0;
      });
      var box = el("fieldset", { "class": "ac-picker", id: entity + "-picker" }, [
        el("legend", { text: "ActiveCampaign fields to map" })
      ]);
      if (!free.length) {
        box.appendChild(el("p", { "class": "ac-hint", text: "Every field is mapped." }));
      }
      free.forEach(function (field) {
        box.appendChild(el("label", { "class": "ac-check" }, [
          el("input", { type: "checkbox", value: field.id }), " " + field.title +
            (field.standard ? "" : " (" + field.type + ")")
        ]));
      });
      box.appendChild(el("div", { "class": "ac-row" }, [
        el("button", { type: "button", "class": "ac-primary", text: "Add", onclick: function () {
          box.querySelectorAll("input:checked").forEach(function (input) {
            state.field_mappings.push({ ac_field: input.value, dynamics_column: "",
              direction: "both", option_map: {} });
          });
          picking = false;
          render();
        } }),
        el("button", { type: "button", text: "Cancel",
          onclick: function () { picking = false; render(); } })
      ]));
      return box;
    }

    var picking = false;

    function render() {
      body.textContent = "";
      var all = el("input", { type: "radio", name: entity + "-mode", value: "all" });
      var some = el("input", { type: "radio", name: entity + "-mode", value: "criteria" });
      all.checked = state.mode === "all";
      some.checked = state.mode === "criteria";
      [all, some].forEach(function (radio) {
        radio.addEventListener("change", function () { state.mode = radio.value; render(); });
      });
      body.appendChild(el("fieldset", { "class": "ac-mode" }, [
        el("legend", { text: "Which " + names.plural + " sync" }),
        el("label", {}, [all, " All " + names.plural + " created or updated"]), el("br"),
        el("label", {}, [some, " Only " + names.plural + " matching criteria"])
      ]));
      if (state.mode === "criteria") {
        body.appendChild(criteriaBlock());
      }
      body.appendChild(el("h3", { text: "Field mapping" }));
      body.appendChild(mappingTable());
      body.appendChild(errorLine((errors.field_mappings || {})._schema));
      if (picking) {
        body.appendChild(picker());
      } else {
        body.appendChild(el("button", { type: "button", text: "Edit", "aria-label": "Edit " +
          names.title.toLowerCase() + " mapping", onclick: function () { picking = true; render(); } }));
      }
    }

    function payload() {
      return {
        enabled: state.enabled,
        mode: state.mode,
        criteria: state.criteria.map(function (c) {
          return { field: c.field, operator: c.operator,
            value: c.operator === "is_empty" || c.operator === "is_not_empty" ? null :
              (c.value === undefined ? null : c.value) };
        }),
        field_mappings: state.field_mappings.map(function (m) {
          return { ac_field: m.ac_field, dynamics_column: m.dynamics_column,
            direction: m.direction || "both", option_map: m.option_map || {} };
        })
      };
    }

    function save() {
      admin.message("");
      client.put("/api/v1/admin/data-configuration/" + entity, payload()).then(function (saved) {
        state = JSON.parse(JSON.stringify(saved));
        errors = {};
        render();
        admin.message(names.title + " configuration saved.", "success");
      }, function (error) {
        errors = (error.body && error.body.error && error.body.error.fields) || {};
        render();
        admin.message(names.title + ": " + (Object.keys(errors).length ?
          "some settings cannot work; see the marked rows." : error.message), "error");
      });
    }

    var toggle = el("input", { type: "checkbox", role: "switch", id: entity + "-enabled" });
    toggle.checked = state.enabled;
    var toggleState = el("strong", { text: state.enabled ? "On" : "Off" });
    toggle.addEventListener("change", function () {
      state.enabled = toggle.checked;
      toggleState.textContent = toggle.checked ? "On" : "Off";
      show(body, toggle.checked);
    });
    section.appendChild(el("h2", { id: entity + "-title" }, [names.title,
      el("label", { "class": "ac-switch" }, [toggle, el("span", { text: "Sync " + names.plural }),
        toggleState])]));
    section.appendChild(el("p", { "class": "ac-hint", text: "Off: " + names.plural +
      " are not synced at all (Save changes to apply)." , hidden: state.enabled }));
    toggle.addEventListener("change", function () {
      section.querySelector(".ac-hint").hidden = toggle.checked;
    });
    section.appendChild(body);
    section.appendChild(el("div", { "class": "ac-row ac-actions" }, [
      el("button", { type: "button", "class": "ac-primary", text: "Save changes",
        "aria-label": "Save " + names.title.toLowerCase() + " changes", onclick: save })
    ]));
    show(body, state.enabled);
    render();
    return section;
  }

  function dataConfigurationPage() {
    var root = $("entities");
    return Promise.all(["lead", "contact"].map(function (entity) {
      return Promise.all([
        client.get("/api/v1/admin/data-configuration/" + entity),
        client.get("/api/v1/admin/data-configuration/" + entity + "/fields")
      ]);
    })).then(function (results) {
      ["lead", "contact"].forEach(function (entity, index) {
        root.appendChild(entitySection(entity, results[index][0], results[index][1]));
      });
    });
  }

  /* --- Sync Health and Dashboard ----------------------------------------------------------- */
  var COUNT_TEXT = [
    ["synced", "In sync"], ["excluded", "Excluded by criteria"], ["failing", "Failing"],
    ["pending", "Waiting to sync"]
  ];
  var RUN_TEXT = { initial: "Initial sync", scheduled: "Scheduled sync" };

  function renderCounts(counts) {
    var box = $("counts");
    box.textContent = "";
    COUNT_TEXT.forEach(function (pair) {
      var tone = pair[0] === "failing" && !counts.failing ? "" : " ac-card-" + pair[0];
      box.appendChild(el("div", { "class": "ac-card" + tone, id: "count-" + pair[0] }, [
        el("strong", { text: String(counts[pair[0]] || 0) }), el("span", { text: pair[1] })
      ]));
    });
  }

  function renderRuns(runs) {
    var rows = $("run-rows");
    rows.textContent = "";
    runs.forEach(function (run) {
      rows.appendChild(el("tr", {}, [
        el("td", { text: RUN_TEXT[run.kind] || run.kind }),
        el("td", { text: run.status + (run.error ? ": " + run.error : "") }),
        el("td", { text: admin.formatDate(run.started_at) }),
        el("td", { text: admin.formatDate(run.finished_at) }),
        el("td", { text: (run.records_done || 0) + " of " + (run.records_total || 0) +
          (run.records_failed ? ", " + run.records_failed + " failed" : "") })
      ]));
    });
    show($("no-runs"), runs.length === 0);
  }

  function recordLink(record) {
    var xrm = window.Xrm || (window.parent && window.parent.Xrm);
    var base = xrm && xrm.Utility && xrm.Utility.getGlobalContext ?
      xrm.Utility.getGlobalContext().getClientUrl() : "";
    return el("a", {
      href: base + "/main.aspx?pagetype=entityrecord&etn=" + record.entity + "&id=" + record.dynamics_id,
      target: "_top", text: (record.entity === "lead" ? "Lead " : "Contact ") + record.dynamics_id.slice(0, 8)
    });
  }

  function syncHealthPage() {
    function render(health) {
      renderCounts(health.counts);
      renderRuns(health.runs);
      var rows = $("failing-rows");
      rows.textContent = "";
      health.failing.forEach(function (record) {
        var button = el("button", { type: "button", text: "Retry",
          "aria-label": "Retry " + (record.email || record.dynamics_id) });
        button.addEventListener("click", function () {
          button.disabled = true;
          client.post("/api/v1/admin/sync-health/failing/" + record.id + "/retry", {}).then(function () {
            admin.message("Retry queued for " + (record.email || record.dynamics_id) + ".", "success");
            load();
          }, function (error) {
            button.disabled = false;
            admin.fail(error);
          });
        });
        rows.appendChild(el("tr", { "data-record": record.dynamics_id }, [
          el("td", {}, [recordLink(record)]),
          el("td", { text: record.email || "" }),
          el("td", { "class": "ac-error-text", text: record.error || "" }),
          el("td", { text: admin.formatDate(record.updated_at) }),
          el("td", {}, [button])
        ]));
      });
      show($("no-failing"), health.failing.length === 0);
    }

    function load() {
      return client.get("/api/v1/admin/sync-health").then(render);
    }
    $("refresh").addEventListener("click", function () {
      admin.message("");
      load().catch(admin.fail);
    });
    return load();
  }

  function dashboardPage() {
    return Promise.all([
      client.get("/api/v1/admin/connection"),
      client.get("/api/v1/admin/sync-settings"),
      client.get("/api/v1/admin/sync-health")
    ]).then(function (results) {
      var connection = results[0];
      var settings = results[1];
      var health = results[2];
      $("dash-connection").textContent = connection.connected ?
        "Connected to " + connection.ac_api_url + (connection.ac_account ? " (" + connection.ac_account + ")" : "") :
        "Not connected";
      $("dash-global").textContent = settings.global_sync_enabled ? "On" : "Off: nothing is written to ActiveCampaign";
      $("dash-frequency").textContent = settings.sync_frequency_hours === 24 ? "Once a day" :
        "Every " + settings.sync_frequency_hours + " hour" + (settings.sync_frequency_hours === 1 ? "" : "s");
      $("dash-initial").textContent = STATUS_TEXT[settings.initial_sync.status] || settings.initial_sync.status;
      renderCounts(health.counts);
      renderRuns(health.runs.slice(0, 5));
    });
  }

  admin.controllers = {
    settings: settingsPage,
    sync_settings: syncSettingsPage,
    user_management: userManagementPage,
    data_configuration: dataConfigurationPage,
    sync_health: syncHealthPage,
    dashboard: dashboardPage
  };

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.getAttribute("data-page");
    var controller = admin.controllers[page];
    if (!controller) {
      return;
    }
    admin.requireAdmin().then(function (me) {
      if (!me.connected && page !== "settings") {
        admin.message("Connect an ActiveCampaign account first, on the Settings page.", "error");
        throw Object.assign(new Error("not connected"), { handled: true });
      }
      show($("page-content"), true);
      return controller(me);
    }).catch(function (error) {
      if (!error.handled) {
        admin.message(error.message, "error");
      }
    });
  });
})();
