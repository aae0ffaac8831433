/* Safe Report Drop Box: the report form and the "send more information" form, sealed in the
 * browser.
 *
 * Progressive enhancement of forms that work without JavaScript: when libsodium is ready, a
 * submit builds the whole envelope here (answers, message and every file, read in slices and
 * sealed to the recipient's public keys from the page) and uploads only ciphertext to
 * /submit/envelope. If anything in this path fails before upload, the page says so and the
 * next "Send" goes through the ordinary form post (sealed by the server as it arrives).
 *
 * Nothing is stored in the browser: no localStorage, sessionStorage, IndexedDB, cookies or
 * service worker. The return code is shown in the page and kept nowhere, never in a URL.
 * Every text shown comes from the page (templates/_js.html), so it is translated with it. */
(function () {
  "use strict";
  if (typeof document === "undefined") return; // loaded in node for the tests

  var SLICE_BYTES = 1024 * 1024; // read from a file at a time
  var STEP_BYTES = 64 * 1024; // sealed between checks of the clock
  var YIELD_MS = 40; // give the page back this often, so it stays responsive
  var READY_MS = 120000; // libsodium not ready by then (a very slow phone): use the form post
  // Python's str.strip() whitespace, which the server uses on the no-JS path.
  var STRIP = /^[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;
  var CONTROL = /[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f]/;
  var MEDIA_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/;
  var DATE = /^\d{4}-\d{2}-\d{2}$/;

  var form = document.getElementById("envelope-form");
  if (!form) return;
  var kind = form.getAttribute("data-kind"); // "report" or "more"
  // The page's language prefix ("" or "/es"), taken from the form's own address, so that the
  // upload's replies and the next page come in the language the person chose.
  var base = (form.getAttribute("action") || "").replace(/\/(report|conversation\/send)$/, "");
  if (!/^(\/[a-z]{2,3}(-[A-Za-z0-9]+)?)?$/.test(base)) base = "";
  var $ = function (id) { return document.getElementById(id); };
  var ui = {
    ready: $("js-ready"),
    fallback: $("js-fallback"),
    progress: $("js-progress"),
    lockText: $("js-progress-lock"),
    sendText: $("js-progress-send"),
    bar: $("js-progress-bar"),
    failed: $("js-failed"),
    failedReason: $("js-failed-reason"),
    retry: $("js-retry"),
    submit: form.querySelector("button[type=submit], input[type=submit]"),
  };
  var mode = "loading"; // loading | ready | busy | fallback
  var upload = null; // {body: Blob, url, csrf}: kept for "Try again"

  // -- small helpers -----------------------------------------------------------------------

  function text(key) {
    var node = document.querySelector('#js-texts [data-text="' + key + '"]');
    return node ? node.textContent.trim() : key;
  }

  function show(node, visible) {
    if (node) node.hidden = !visible;
  }

  function strip(value) {
    return value.replace(/\r\n?/g, "\n").replace(STRIP, "");
  }

  function yieldToPage() {
    // A message, not setTimeout: timers are throttled in background tabs.
    return new Promise(function (resolve) {
      var channel = new MessageChannel();
      channel.port1.onmessage = function () { resolve(); };
      channel.port2.postMessage(null);
    });
  }

  function readSlice(file, start, end) {
    var blob = file.slice(start, end);
    if (blob.arrayBuffer) return blob.arrayBuffer();
    return new Promise(function (resolve, reject) {
      var reader = new FileReader();
      reader.onload = function () { resolve(reader.result); };
      reader.onerror = function () { reject(reader.error); };
      reader.readAsArrayBuffer(blob);
    });
  }

  function mediaType(file) {
    var value = (file.type || "").split(";")[0].trim().toLowerCase();
    return MEDIA_TYPE.test(value) ? value : "application/octet-stream";
  }

  function validDate(value) {
    if (!DATE.test(value)) return false;
    var parts = value.split("-").map(Number);
    var d = new Date(Date.UTC(parts[0], parts[1] - 1, parts[2]));
    return parts[0] >= 1 && d.getUTCFullYear() === parts[0] &&
      d.getUTCMonth() === parts[1] - 1 && d.getUTCDate() === parts[2];
  }

  // -- reading the form (the same answers the server builds from the no-JS post) ------------

  function fileProblem(name) {
    var env = window.SRDBEnvelope;
    if (env.codePoints(name) > env.MAX_NAME_CHARS) return "long_name";
    var trimmed = name.replace(STRIP, "");
    if (name.indexOf("/") >= 0 || name.indexOf("\\") >= 0 || trimmed === "" ||
        trimmed === "." || trimmed === "..") return "invalid_name";
    if (CONTROL.test(name) || env.hasLoneSurrogate(name)) return "bad_name";
    return null;
  }

  /** {answers, message, language, files, recipient, errors}; errors maps field -> text key. */
  function readForm() {
    var errors = {};
    var answers = {};
    var questions = form.querySelectorAll("[data-question]");
    Array.prototype.forEach.call(questions, function (box) {
      var id = box.getAttribute("data-question");
      var type = box.getAttribute("data-type");
      var inputs = box.querySelectorAll('[name="' + id + '"]');
      if (type === "checkboxes") {
        var chosen = [];
        Array.prototype.forEach.call(inputs, function (i) { if (i.checked) chosen.push(i.value); });
        if (chosen.length) answers[id] = chosen;
      } else if (type === "radio") {
        Array.prototype.forEach.call(inputs, function (i) {
          if (i.checked && i.value) answers[id] = i.value;
        });
      } else if (inputs.length) {
        // Lengths need no check here: maxlength counts UTF-16 units, never fewer than the
        // code points the server counts.
        var value = strip(inputs[0].value);
        if (type === "date" && value && !validDate(value)) {
          errors[id] = "date";
        } else if (value) {
          answers[id] = value;
        }
      }
      if (box.hasAttribute("data-required") && !(id in answers) && !(id in errors)) {
        errors[id] = type === "checkboxes" ? "tick" : "required";
      }
    });

    var messageBox = form.querySelector('[name="message"]');
    var message = messageBox ? strip(messageBox.value) : "";
    var languageBox = form.querySelector('[name="language"]');
    var language = languageBox ? languageBox.value : "";

    var recipient = null;
    if (kind === "report") {
      var checked = form.querySelector('input[name="recipient"]:checked');
      if (checked) {
        recipient = { id: checked.value, name: checked.getAttribute("data-name") || "",
          keys: checked.getAttribute("data-keys") };
      } else {
        errors.recipient = "recipient";
      }
    } else {
      recipient = { id: form.getAttribute("data-recipient"), name: "",
        keys: form.getAttribute("data-keys") };
    }

    var input = form.querySelector('input[type="file"][name="attachments"]');
    var files = input && input.files ? Array.prototype.slice.call(input.files) : [];
    var total = 0;
    files.forEach(function (f) {
      total += f.size;
      var problem = fileProblem(f.name);
      if (problem && !errors.attachments) errors.attachments = problem;
    });
    if (files.length > Number(form.getAttribute("data-max-files"))) {
      errors.attachments = "too_many_files";
    } else if (total > Number(form.getAttribute("data-max-bytes"))) {
      errors.attachments = "too_large";
    }
    if (kind === "more" && !message && !files.length && !errors.attachments) {
      errors.message = "empty";
    }
    return { answers: answers, message: message, language: language, files: files,
      total: total, recipient: recipient, errors: errors };
  }

  // -- errors next to the fields ------------------------------------------------------------

  function describedBy(node, id, add) {
    var ids = (node.getAttribute("aria-describedby") || "").split(/\s+/).filter(function (x) {
      return x && x !== id;
    });
    if (add) ids.push(id);
    if (ids.length) node.setAttribute("aria-describedby", ids.join(" "));
    else node.removeAttribute("aria-describedby");
  }

  function clearErrors() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-js-invalid]"), function (n) {
      n.removeAttribute("data-js-invalid");
      n.removeAttribute("aria-invalid");
      describedBy(n, n.getAttribute("data-js-error-id"), false);
      n.removeAttribute("data-js-error-id");
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-js-error]"), function (n) {
      n.parentNode.removeChild(n);
    });
  }

  /** Errors as the server shows them: a summary above the form, and each message next to its
   * field, tied to it with aria-describedby (the fieldset of a group, else the input). */
  function showErrors(errors) {
    clearErrors();
    var summary = document.createElement("div");
    summary.className = "error-summary";
    summary.setAttribute("role", "alert");
    summary.setAttribute("tabindex", "-1");
    summary.setAttribute("data-js-error", "");
    var heading = document.createElement("h2");
    heading.textContent = text("summary");
    var note = document.createElement("p");
    note.textContent = text("nothing_sent");
    var list = document.createElement("ul");
    summary.appendChild(heading);
    summary.appendChild(note);
    summary.appendChild(list);
    Object.keys(errors).forEach(function (field) {
      var message = text(errors[field]);
      var box = $("field-" + field);
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = "#field-" + field;
      link.textContent = message;
      item.appendChild(link);
      list.appendChild(item);
      if (!box) return;
      var p = document.createElement("p");
      p.className = "error";
      p.id = "js-error-" + field;
      p.setAttribute("data-js-error", "");
      var prefix = document.createElement("span");
      prefix.className = "visually-hidden";
      prefix.textContent = text("error_prefix") + " ";
      p.appendChild(prefix);
      p.appendChild(document.createTextNode(message));
      var before = box.querySelector(".choice, input, textarea, select");
      box.insertBefore(p, before && before.parentNode === box ? before : null);
      var targets = box.tagName === "FIELDSET" ? [box]
        : Array.prototype.slice.call(box.querySelectorAll("input, textarea, select"));
      targets.forEach(function (node) {
        node.setAttribute("aria-invalid", "true");
        node.setAttribute("data-js-invalid", "");
        node.setAttribute("data-js-error-id", p.id);
        describedBy(node, p.id, true);
      });
    });
    form.parentNode.insertBefore(summary, form);
    summary.focus();
  }

  // -- the states of the page ---------------------------------------------------------------

  function setBusy(busy) {
    mode = busy ? "busy" : "ready";
    if (ui.submit) ui.submit.disabled = busy;
  }

  function setProgress(phase, fraction) {
    show(ui.progress, true);
    show(ui.lockText, phase === "lock");
    show(ui.sendText, phase === "send");
    if (ui.bar) {
      ui.bar.setAttribute("aria-labelledby", phase === "lock" ? "js-progress-lock"
        : "js-progress-send");
      ui.bar.value = Math.max(0, Math.min(100, Math.floor(fraction * 100)));
    }
  }

  /** The JavaScript path cannot be used: say so; the next "Send" posts the form itself. */
  function fallBack() {
    mode = "fallback";
    upload = null;
    show(ui.ready, false);
    show(ui.progress, false);
    show(ui.failed, false);
    show(ui.fallback, true);
    if (ui.submit) ui.submit.disabled = false;
  }

  function failed(reason) {
    setBusy(false);
    show(ui.progress, false);
    show(ui.failed, true);
    if (ui.failedReason) {
      ui.failedReason.textContent = reason || "";
      show(ui.failedReason, !!reason);
    }
    if (ui.retry) ui.retry.focus();
  }

  // -- sealing -------------------------------------------------------------------------------

  async function seal(data, onProgress) {
    var sodium = window.sodium;
    var env = window.SRDBEnvelope;
    var keys = (data.recipient.keys || "").split(/\s+/).filter(Boolean).map(function (k) {
      return env.decodePublicKey(sodium, k);
    });
    var encryptor = new env.Encryptor(sodium, keys);
    var pieces = encryptor.take();
    var done = 0;
    var started = Date.now();
    var lastYield = started;
    for (var f = 0; f < data.files.length; f++) {
      var file = data.files[f];
      encryptor.beginAttachment(file.name, mediaType(file));
      for (var pos = 0; pos < file.size; pos += SLICE_BYTES) {
        var slice;
        try {
          slice = new Uint8Array(await readSlice(file, pos, Math.min(pos + SLICE_BYTES, file.size)));
        } catch (e) {
          var err = new Error("unreadable");
          err.field = "attachments";
          throw err;
        }
        for (var step = 0; step < slice.length; step += STEP_BYTES) {
          var out = encryptor.write(slice.subarray(step, Math.min(step + STEP_BYTES, slice.length)));
          for (var i = 0; i < out.length; i++) pieces.push(out[i]);
          done += Math.min(STEP_BYTES, slice.length - step);
          if (Date.now() - lastYield >= YIELD_MS) {
            onProgress(data.total ? done / data.total : 0);
            await yieldToPage();
            lastYield = Date.now();
          }
        }
        slice.fill(0);
      }
      Array.prototype.push.apply(pieces, encryptor.endAttachment());
    }
    var extra = kind === "report" && form.getAttribute("data-questionnaire")
      ? { questionnaire: form.getAttribute("data-questionnaire") } : {};
    Array.prototype.push.apply(pieces, encryptor.finish({
      kind: "report", language: data.language, message: data.message,
      answers: kind === "report" ? data.answers : {}, extra: extra,
    }));
    onProgress(1);
    var seconds = (Date.now() - started) / 1000;
    // For the browser tests, which report the speed: no content, only sizes and time.
    document.body.setAttribute("data-sealed-bytes", String(data.total));
    document.body.setAttribute("data-sealed-ms", String(Math.round(seconds * 1000)));
    return new Blob(pieces, { type: "application/octet-stream" });
  }

  // -- uploading -----------------------------------------------------------------------------

  function send() {
    var job = upload;
    setBusy(true);
    show(ui.failed, false);
    setProgress("send", 0);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", job.url, true);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("X-CSRF-Token", job.csrf);
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) setProgress("send", e.loaded / e.total);
    };
    xhr.onerror = xhr.ontimeout = xhr.onabort = function () { failed(""); };
    xhr.onload = function () {
      var reply = null;
      try {
        reply = JSON.parse(xhr.responseText);
      } catch (e) {
        reply = null;
      }
      if (xhr.status === 200 && reply && reply.status === "received") {
        received(reply);
      } else {
        failed(reply && typeof reply.error === "string" ? reply.error : "");
      }
    };
    xhr.send(job.body);
  }

  function received(reply) {
    var name = upload.recipientName;
    upload = null;
    // Sending more information, or a report from someone signed in with a return code: it
    // joins their conversation, and there is no new code to show.
    if (kind !== "report" || !reply.code) {
      window.location.assign(base + "/conversation?sent=1");
      return;
    }
    var receipt = $("js-receipt");
    var main = receipt.parentNode;
    // The report leaves the page: nothing of it stays in the document.
    form.reset();
    Array.prototype.forEach.call(main.children, function (child) {
      if (child !== receipt) child.hidden = true;
    });
    main.removeChild(form);
    var groups = String(reply.code || "").split(/\s+/);
    Array.prototype.forEach.call(receipt.querySelectorAll(".code .group"), function (span, i) {
      span.textContent = groups[i] || "";
    });
    Array.prototype.forEach.call(receipt.querySelectorAll('[data-receipt="recipient"]'),
      function (span) { span.textContent = name; });
    receipt.hidden = false;
    window.scrollTo(0, 0);
    var heading = receipt.querySelector("h1");
    if (heading) heading.focus();
  }

  async function start() {
    var data = readForm();
    if (Object.keys(data.errors).length) {
      showErrors(data.errors);
      return;
    }
    clearErrors();
    setBusy(true);
    show(ui.failed, false);
    setProgress("lock", 0);
    var body;
    try {
      await Promise.race([window.sodium.ready, new Promise(function (resolve, reject) {
        setTimeout(function () { reject(new Error("libsodium is not ready")); }, READY_MS);
      })]);
      body = await seal(data, function (fraction) { setProgress("lock", fraction); });
    } catch (e) {
      if (e && e.field) {
        setBusy(false);
        show(ui.progress, false);
        var errors = {};
        errors[e.field] = e.message;
        showErrors(errors);
      } else {
        fallBack();
      }
      return;
    }
    if (body.size > Number(form.getAttribute("data-max-bytes"))) {
      setBusy(false);
      show(ui.progress, false);
      showErrors({ attachments: "too_large" });
      return;
    }
    var csrf = form.querySelector('input[name="csrf"]');
    upload = {
      body: body,
      url: base + "/submit/envelope?recipient=" + encodeURIComponent(data.recipient.id),
      csrf: csrf ? csrf.value : "",
      recipientName: data.recipient.name,
    };
    send();
  }

  // -- wiring ----------------------------------------------------------------------------------

  form.addEventListener("submit", function (event) {
    if (mode === "fallback") return; // the browser posts the form itself
    event.preventDefault();
    if (mode === "busy") return;
    start().catch(fallBack);
  });
  if (ui.retry) {
    ui.retry.addEventListener("click", function () {
      if (upload && mode !== "busy") send();
    });
  }

  var usable = window.sodium && window.sodium.ready && window.SRDBEnvelope &&
    window.Blob && window.XMLHttpRequest && window.MessageChannel && window.TextEncoder &&
    window.Uint8Array && window.Promise;
  if (!usable) {
    fallBack();
    return;
  }
  window.sodium.ready.then(function () {
    if (typeof window.sodium.crypto_hash_sha256_init !== "function") throw new Error("no sha256");
    if (mode === "loading") mode = "ready";
    show(ui.ready, mode === "ready");
  }).catch(fallBack);
})();
