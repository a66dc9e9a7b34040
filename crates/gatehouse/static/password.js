// Password fields, enhanced: every password field gets a control that shows what was typed, and
// every field for a new password (marked `data-strength`) a strength meter. The forms work
// without this script; the server's policy (length, common passwords, the address) stays the
// rule. Served as a static file: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  var LABELS = ["Too short", "Weak", "Fair", "Good", "Strong"];

  // A rough score from 0 to 4: 0 below the minimum length, then by the bits of a guess over the
  // characters' alphabets, counting a character that repeats or continues a run (aaa, abc, 321)
  // as almost nothing.
  function score(value, minLength) {
    var chars = Array.from(value);
    if (chars.length < minLength) {
      return 0;
    }
    var pool = 0;
    if (/[a-z]/.test(value)) { pool += 26; }
    if (/[A-Z]/.test(value)) { pool += 26; }
    if (/[0-9]/.test(value)) { pool += 10; }
    if (/[^A-Za-z0-9]/.test(value)) { pool += 33; }
    var effective = 0;
    for (var i = 0; i < chars.length; i++) {
      var here = chars[i].codePointAt(0);
      var before = i > 0 ? chars[i - 1].codePointAt(0) : null;
      var step = before === null ? null : here - before;
      effective += step === 0 || step === 1 || step === -1 ? 0.2 : 1;
    }
    var bits = effective * Math.log2(Math.max(pool, 2));
    if (bits < 40) { return 1; }
    if (bits < 60) { return 2; }
    if (bits < 80) { return 3; }
    return 4;
  }

  function addMeter(input) {
    var minLength = parseInt(input.getAttribute("data-min-length") || "12", 10);
    var box = document.createElement("div");
    box.className = "password-strength";
    var meter = document.createElement("meter");
    meter.id = input.id + "-strength";
    meter.min = 0;
    meter.max = 4;
    meter.low = 2;
    meter.high = 3;
    meter.optimum = 4;
    meter.value = 0;
    var text = document.createElement("span");
    text.id = input.id + "-strength-text";
    text.setAttribute("aria-live", "polite");
    meter.setAttribute("aria-labelledby", text.id);
    box.appendChild(meter);
    box.appendChild(text);
    input.insertAdjacentElement("afterend", box);
    var described = input.getAttribute("aria-describedby");
    input.setAttribute("aria-describedby", described ? described + " " + text.id : text.id);
    function update() {
      var s = score(input.value, minLength);
      meter.value = s;
      meter.setAttribute("data-score", String(s));
      text.textContent = "Strength: " + LABELS[s];
    }
    input.addEventListener("input", update);
    update();
  }

  function addToggle(input) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "password-toggle";
    button.id = input.id + "-show";
    button.setAttribute("aria-controls", input.id);
    button.setAttribute("aria-pressed", "false");
    button.textContent = "Show password";
    button.addEventListener("click", function () {
      var show = input.type === "password";
      input.type = show ? "text" : "password";
      button.setAttribute("aria-pressed", show ? "true" : "false");
      button.textContent = show ? "Hide password" : "Show password";
    });
    input.insertAdjacentElement("afterend", button);
    // A shown password is hidden again before the form is sent, so the browser keeps it as a
    // password.
    if (input.form) {
      input.form.addEventListener("submit", function () {
        input.type = "password";
      });
    }
  }

  var fields = document.querySelectorAll("input[type=password]");
  for (var i = 0; i < fields.length; i++) {
    if (fields[i].hasAttribute("data-strength")) {
      addMeter(fields[i]);
    }
    addToggle(fields[i]);
  }
})();
