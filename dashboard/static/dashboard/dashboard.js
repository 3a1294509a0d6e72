// Dashboard: the section tabs and the API key dialog. Plain JS, no build step.
(function () {
  "use strict";

  // ---- Tabs (WAI-ARIA tabs pattern; without JS both sections simply show) ----
  var tablist = document.querySelector("[data-tabs]");
  if (tablist) {
    var tabs = Array.prototype.slice.call(tablist.querySelectorAll("[role=tab]"));
    var activate = function (tab, focus) {
      tabs.forEach(function (other) {
        var selected = other === tab;
        other.setAttribute("aria-selected", String(selected));
        other.tabIndex = selected ? 0 : -1;
        document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
      });
      if (focus) tab.focus();
      if (history.replaceState) history.replaceState(null, "", "#" + tab.dataset.tab);
    };
    tabs.forEach(function (tab, index) {
      tab.addEventListener("click", function () { activate(tab, false); });
      tab.addEventListener("keydown", function (event) {
        var next = null;
        if (event.key === "ArrowRight") next = tabs[(index + 1) % tabs.length];
        else if (event.key === "ArrowLeft") next = tabs[(index - 1 + tabs.length) % tabs.length];
        else if (event.key === "Home") next = tabs[0];
        else if (event.key === "End") next = tabs[tabs.length - 1];
        if (next) { event.preventDefault(); activate(next, true); }
      });
    });
    tablist.hidden = false;
    var wanted = tabs.filter(function (tab) { return "#" + tab.dataset.tab === location.hash; })[0];
    activate(wanted || tabs[0], false);
  }

  // ---- API key dialog ----
  var dialog = document.getElementById("api-key-dialog");
  var opener = document.getElementById("api-key-open");
  if (!dialog || !opener) return;

  var $ = function (selector) { return dialog.querySelector(selector); };
  var keyText = $("[data-key-text]");
  var stateBadge = $("[data-key-state]");
  var statusLine = $("[data-status]");
  var revealButton = $("[data-action=reveal]");
  var copyButton = $("[data-action=copy]");
  var regenerateButton = $("[data-action=regenerate]");
  var toggleButton = $("[data-action=toggle]");
  var pageMasked = document.querySelector("[data-key-masked]");
  var pageBadge = document.querySelector("[data-key-badge]");

  var state = {
    hasKey: dialog.dataset.hasKey === "true",
    masked: dialog.dataset.masked,
    enabled: dialog.dataset.enabled === "true",
    key: null, // the raw key, only after a reveal/regenerate while the dialog is open
    shown: false,
    busy: false,
  };

  function say(message, kind) {
    statusLine.textContent = message;
    statusLine.dataset.kind = kind || "ok";
  }

  function render() {
    keyText.textContent = state.shown && state.key ? state.key : state.masked;
    keyText.classList.toggle("key-revealed", state.shown);
    revealButton.setAttribute("aria-pressed", String(state.shown));
    revealButton.setAttribute("aria-label", state.shown ? "Hide key" : "Reveal key");
    revealButton.title = state.shown ? "Hide key" : "Reveal key";
    // SVG elements have no .hidden property: toggle the attribute.
    revealButton.querySelector("[data-icon=eye]").toggleAttribute("hidden", state.shown);
    revealButton.querySelector("[data-icon=eye-off]").toggleAttribute("hidden", !state.shown);
    var label = !state.hasKey ? "None" : state.enabled ? "Enabled" : "Disabled";
    [stateBadge, pageBadge].forEach(function (badge) {
      if (!badge) return;
      badge.textContent = label;
      badge.classList.toggle("badge-on", state.hasKey && state.enabled);
      badge.classList.toggle("badge-off", !(state.hasKey && state.enabled));
    });
    if (pageMasked) pageMasked.textContent = state.masked;
    toggleButton.textContent = state.enabled || !state.hasKey ? "Disable key" : "Enable key";
    regenerateButton.textContent = state.hasKey ? "Regenerate" : "Create key";
    [revealButton, copyButton, toggleButton].forEach(function (button) {
      button.disabled = state.busy || !state.hasKey;
    });
    regenerateButton.disabled = state.busy;
  }

  function post(action) {
    return fetch(dialog.dataset["url" + action.charAt(0).toUpperCase() + action.slice(1)], {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": dialog.dataset.csrf, Accept: "application/json" },
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) {
        if (response.ok && body) return body;
        var message = body && body.error ? body.error.message
          : response.status === 403 ? "Your session has expired. Reload the page and try again."
          : "Something went wrong (HTTP " + response.status + "). Try again.";
        throw new Error(message);
      });
    });
  }

  function apply(body) {
    state.hasKey = true;
    state.masked = body.masked;
    state.enabled = body.enabled;
    if (body.key) state.key = body.key;
  }

  // Runs one action at a time; every outcome, good or bad, ends up in the status line.
  function run(button, work) {
    if (state.busy) return;
    state.busy = true;
    render();
    Promise.resolve()
      .then(work)
      .catch(function (error) { say(error.message || String(error), "error"); })
      .then(function () {
        state.busy = false;
        render();
        // The button was disabled while busy, which can drop keyboard focus: give it back.
        if (dialog.open && !dialog.contains(document.activeElement)) button.focus();
      });
  }

  function reveal() {
    return post("reveal").then(apply);
  }

  revealButton.addEventListener("click", function () {
    run(revealButton, function () {
      if (state.shown) {
        state.shown = false;
        say("Key hidden.");
        return;
      }
      return reveal().then(function () {
        state.shown = true;
        say("Key revealed. Keep it secret.");
      });
    });
  });

  copyButton.addEventListener("click", function () {
    run(copyButton, function () {
      return (state.key ? Promise.resolve() : reveal())
        .then(function () {
          if (!navigator.clipboard) throw new Error("clipboard unavailable");
          return navigator.clipboard.writeText(state.key);
        })
        .then(function () { say("Key copied to the clipboard."); })
        .catch(function (error) {
          if (!state.key) throw error;
          state.shown = true;
          say("Could not copy automatically: the key is shown, select it and copy it yourself.", "error");
        });
    });
  });

  regenerateButton.addEventListener("click", function () {
    var question = state.hasKey
      ? "Regenerate your API key? The current key stops working immediately."
      : "Create an API key?";
    if (!window.confirm(question)) {
      say("Nothing changed: regeneration cancelled.");
      return;
    }
    run(regenerateButton, function () {
      return post("regenerate").then(function (body) {
        apply(body);
        state.shown = true;
        say(body.message + " The new key is shown: copy it now.");
      });
    });
  });

  toggleButton.addEventListener("click", function () {
    run(toggleButton, function () {
      return post(state.enabled ? "disable" : "enable").then(function (body) {
        apply(body);
        say(body.message);
      });
    });
  });

  Array.prototype.forEach.call(dialog.querySelectorAll("[data-action=close]"), function (button) {
    button.addEventListener("click", function () { dialog.close(); });
  });

  // A click on the backdrop (outside the dialog box) closes it too.
  dialog.addEventListener("click", function (event) {
    if (event.target !== dialog) return;
    var box = dialog.getBoundingClientRect();
    var inside = event.clientX >= box.left && event.clientX <= box.right &&
      event.clientY >= box.top && event.clientY <= box.bottom;
    if (!inside) dialog.close();
  });

  opener.addEventListener("click", function () {
    say("");
    render();
    dialog.showModal(); // focus goes to the autofocus button; Escape closes (native <dialog>)
  });

  // Closing forgets the revealed key, so the dialog always reopens masked; focus returns to the opener.
  dialog.addEventListener("close", function () {
    state.key = null;
    state.shown = false;
    render();
    opener.focus();
  });

  render();
})();
