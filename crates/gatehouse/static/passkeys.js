// Passkeys: runs the WebAuthn ceremonies of the sign-in page, the second-factor page and the
// account page. Each `[data-passkey]` block names its two endpoints: `data-start` answers the
// `publicKey` options and a ceremony token, `data-finish` takes the browser's answer with the
// token. The server checks everything; this file only converts between JSON (base64url) and the
// ArrayBuffers the browser's API uses. Served as a static file: the Content-Security-Policy
// allows no inline script.
(function () {
  "use strict";

  var NO_WEBAUTHN = "This browser cannot use passkeys. Sign in another way, or use a browser that supports them.";
  var CANCELLED = "The passkey prompt was closed or timed out. Try again.";
  var FAILED = "Something went wrong. Reload the page and try again.";

  function toBuffer(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) { base64 += "="; }
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes.buffer;
  }

  function toText(buffer) {
    if (!buffer) { return null; }
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfToken() {
    var meta = document.querySelector("meta[name='csrf-token']");
    return meta ? meta.getAttribute("content") : "";
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "X-CSRF-Token": csrfToken()
      },
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (json) {
        if (!response.ok) {
          throw new Error(json.detail || FAILED);
        }
        return json;
      });
    });
  }

  function creationOptions(options) {
    options.challenge = toBuffer(options.challenge);
    options.user.id = toBuffer(options.user.id);
    (options.excludeCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return options;
  }

  function requestOptions(options) {
    options.challenge = toBuffer(options.challenge);
    (options.allowCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return options;
  }

  function registration(credential) {
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      extensions: credential.getClientExtensionResults(),
      response: {
        attestationObject: toText(credential.response.attestationObject),
        clientDataJSON: toText(credential.response.clientDataJSON)
      }
    };
  }

  function assertion(credential) {
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      extensions: credential.getClientExtensionResults(),
      response: {
        authenticatorData: toText(credential.response.authenticatorData),
        clientDataJSON: toText(credential.response.clientDataJSON),
        signature: toText(credential.response.signature),
        userHandle: toText(credential.response.userHandle)
      }
    };
  }

  function setup(block) {
    var kind = block.getAttribute("data-passkey");
    var button = block.querySelector("[data-passkey-go]");
    var message = block.querySelector("[data-passkey-message]");
    var nameInput = block.querySelector("[data-passkey-name]");

    function show(text) {
      message.textContent = text;
      message.hidden = false;
    }

    if (!window.PublicKeyCredential || !navigator.credentials) {
      show(NO_WEBAUTHN);
      button.disabled = true;
      return;
    }

    button.addEventListener("click", function () {
      message.hidden = true;
      var name = nameInput ? nameInput.value.trim() : "";
      if (nameInput && !name) {
        show("Give the passkey a name first, such as the device it is on.");
        nameInput.focus();
        return;
      }
      button.disabled = true;
      var ceremony;
      post(block.getAttribute("data-start")).then(function (challenge) {
        ceremony = challenge.ceremony;
        if (kind === "register") {
          return navigator.credentials.create({ publicKey: creationOptions(challenge.publicKey) })
            .then(function (credential) {
              return post(block.getAttribute("data-finish"), {
                ceremony: ceremony, name: name, credential: registration(credential)
              });
            })
            .then(function () { window.location.reload(); });
        }
        return navigator.credentials.get({ publicKey: requestOptions(challenge.publicKey) })
          .then(function (credential) {
            return post(block.getAttribute("data-finish"), {
              ceremony: ceremony,
              credential: assertion(credential),
              next: block.getAttribute("data-next")
            });
          })
          .then(function (answer) { window.location.assign(answer.redirect || "/"); });
      }).catch(function (error) {
        button.disabled = false;
        if (error && (error.name === "NotAllowedError" || error.name === "AbortError")) {
          show(CANCELLED);
        } else if (error && error.name === "InvalidStateError") {
          show("This passkey is already registered.");
        } else {
          show((error && error.message) || FAILED);
        }
      });
    });
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-passkey]"), setup);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
