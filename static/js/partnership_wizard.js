/* Partnership wizard (partnerships/wizards.py): shows and hides the settings whose condition (visible_when) is false,
   updates the validity-window previews as the administrator types, and tests expressions against a user in the page.
   Everything here is an aid: without JavaScript every field is shown (the server ignores the hidden ones), the
   previews are rendered by the server and the expression test opens a page of its own. No CDN, no libraries. */
(function () {
  "use strict";

  function fieldsNamed(scope, name) {
    return Array.prototype.filter.call(scope.querySelectorAll("input, select, textarea"), function (el) {
      return el.name === name;
    });
  }

  function valueOf(elements) {
    if (!elements.length) return undefined;
    var first = elements[0];
    if (first.type === "checkbox" && first.dataset.bool) return first.checked;
    if (first.type === "checkbox") {
      return elements.filter(function (el) { return el.checked; }).map(function (el) { return el.value; });
    }
    if (first.type === "radio") {
      var checked = elements.filter(function (el) { return el.checked; })[0];
      return checked ? checked.value : "";
    }
    if (first.tagName === "SELECT" && first.multiple) {
      return Array.prototype.filter.call(first.options, function (o) { return o.selected; }).map(function (o) { return o.value; });
    }
    return first.value;
  }

  function evaluate(predicate, lookup) {
    if (predicate.all) return predicate.all.every(function (p) { return evaluate(p, lookup); });
    if (predicate.any) return predicate.any.some(function (p) { return evaluate(p, lookup); });
    var value = lookup(predicate.key);
    var matches = function (v) {
      return predicate.values.some(function (wanted) { return wanted === v || (typeof wanted !== "boolean" && String(wanted) === String(v)); });
    };
    var hit = Array.isArray(value) ? value.some(matches) : (value !== undefined && matches(value));
    return hit !== Boolean(predicate.negate);
  }

  function applyVisibility(root, form) {
    root.querySelectorAll("[data-visible-when]").forEach(function (el) {
      var predicate;
      try { predicate = JSON.parse(el.dataset.visibleWhen); } catch (e) { return; }
      var row = el.closest("tr[data-row-prefix]");
      var lookup = function (key) {
        if (row) {
          var inRow = fieldsNamed(row, row.dataset.rowPrefix + "-" + key);
          if (inRow.length) return valueOf(inRow);
        }
        return valueOf(fieldsNamed(form, key));
      };
      var shown = evaluate(predicate, lookup);
      if (el.tagName === "TD") {
        // Keep the cell so the columns stay aligned; hide what is in it.
        el.classList.toggle("not-applicable", !shown);
      } else {
        el.hidden = !shown;
      }
    });
  }

  function hideEmptySections(root) {
    // A titled box whose every setting is hidden would show only its title.
    root.querySelectorAll("fieldset.wizard-section").forEach(function (section) {
      var fields = section.querySelectorAll(":scope > .field");
      if (!fields.length) return;
      section.hidden = Array.prototype.every.call(fields, function (field) { return field.hidden; });
    });
  }

  function debounce(fn, ms) {
    var timer = null;
    return function () {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  function setupPreviews(root, previewUrl) {
    root.querySelectorAll("output.window-preview").forEach(function (output) {
      var input = document.getElementById(output.htmlFor.value || output.getAttribute("for"));
      if (!input || !previewUrl) return;
      var refresh = debounce(function () {
        var params = new URLSearchParams({
          name: output.dataset.preview,
          skew: output.dataset.role === "skew" ? input.value : output.dataset.skew,
          other: output.dataset.role === "other" ? input.value : output.dataset.other,
        });
        fetch(previewUrl + "?" + params.toString(), { headers: { Accept: "application/json" }, credentials: "same-origin" })
          .then(function (response) { return response.ok ? response.json() : null; })
          .then(function (data) { if (data && data.text) output.textContent = data.text; })
          .catch(function () { /* keep the last sentence */ });
      }, 200);
      input.addEventListener("input", refresh);
    });
  }

  function csrfToken(form) {
    var field = form.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function expressionInput(control) {
    var holder = control.closest(".field, td");
    if (!holder) return null;
    return Array.prototype.filter.call(holder.querySelectorAll("input, textarea"), function (el) {
      return !control.contains(el) && el.type !== "hidden";
    })[0] || null;
  }

  function setupExpressionTests(root, form, testUrl) {
    root.querySelectorAll(".expression-test").forEach(function (control, index) {
      var link = control.querySelector(".expression-test-link");
      var result = control.querySelector(".expression-test-result");
      var directories = Array.prototype.map.call(control.querySelectorAll("[data-directory]"), function (el) { return el.dataset.directory; });
      link.addEventListener("click", function (event) {
        event.preventDefault();
        if (control.querySelector(".expression-test-panel")) return;
        var panel = document.createElement("span");
        panel.className = "expression-test-panel";
        if (!directories.length) {
          result.textContent = "Choose the partnership's directories on the Configure partnership step first.";
          return;
        }
        var userId = "expression-test-user-" + index, directoryId = "expression-test-directory-" + index;
        panel.innerHTML =
          '<label for="' + userId + '">User name</label> <input type="text" id="' + userId + '" autocomplete="off"> ' +
          '<label for="' + directoryId + '">in</label> <select id="' + directoryId + '"></select> ' +
          '<button type="button" class="secondary">Test</button>';
        var select = panel.querySelector("select");
        directories.forEach(function (name) {
          var option = document.createElement("option");
          option.value = name;
          option.textContent = name;
          select.appendChild(option);
        });
        control.insertBefore(panel, result);
        var userInput = panel.querySelector("input");
        var run = function () {
          var expression = expressionInput(control);
          var body = new FormData();
          body.append("expression", expression ? expression.value : "");
          body.append("user", userInput.value);
          body.append("directory", select.value);
          result.className = "expression-test-result";
          result.textContent = "Testing…";
          fetch(testUrl, {
            method: "POST",
            body: body,
            credentials: "same-origin",
            headers: { Accept: "application/json", "X-CSRFToken": csrfToken(form) },
          })
            .then(function (response) { return response.json(); })
            .then(function (data) {
              result.className = "expression-test-result " + (data.ok ? "ok" : "bad");
              result.textContent = data.ok ? data.text : data.error;
            })
            .catch(function () {
              result.className = "expression-test-result bad";
              result.textContent = "The test could not be run (no answer from the console).";
            });
        };
        panel.querySelector("button").addEventListener("click", run);
        userInput.addEventListener("keydown", function (event) {
          if (event.key === "Enter") { event.preventDefault(); run(); }
        });
        userInput.focus();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector(".partnership-wizard");
    if (!root) return;
    var form = root.closest("form");
    var refresh = function () {
      applyVisibility(root, form);
      hideEmptySections(root);
    };
    refresh();
    form.addEventListener("change", refresh);
    form.addEventListener("input", refresh);
    setupPreviews(root, root.dataset.previewUrl);
    setupExpressionTests(root, form, root.dataset.expressionTestUrl);
  });
})();
