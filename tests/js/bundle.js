/* Loads the committed page script (dropbox_server/static/app.js) the way a browser does, as one
 * classic script in a fresh global scope, and returns its globals: the tests exercise exactly
 * what the server ships, and need no node_modules. */
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");

const APP_JS = path.join(__dirname, "..", "..", "dropbox_server", "static", "app.js");

/** {sodium, SRDBEnvelope, bytes, ...} after `sodium.ready`. With `wasm: false` the scope has no
 * WebAssembly, as in Tor Browser "Safer", and libsodium runs its pure-JS fallback. */
async function loadBundle({ wasm = true } = {}) {
  const encoder = new TextEncoder();
  const scope = {
    crypto: globalThis.crypto, TextDecoder, console, setTimeout, clearTimeout,
    encodeUtf8: (text) => encoder.encode(text),
  };
  scope.self = scope;
  const context = vm.createContext(scope);
  // TextEncoder is not part of the language, so node's would hand out byte arrays of the
  // outer realm; this one gives the bundle's own.
  vm.runInContext("globalThis.TextEncoder = class TextEncoder {" +
    " encode(text) { return new Uint8Array(encodeUtf8(text)); } };", context);
  if (!wasm) vm.runInContext("delete globalThis.WebAssembly;", context);
  vm.runInContext(fs.readFileSync(APP_JS, "utf8"), context, { filename: APP_JS });
  await context.sodium.ready;
  const RealmBytes = vm.runInContext("Uint8Array", context);
  return {
    sodium: context.sodium,
    SRDBEnvelope: context.SRDBEnvelope,
    context,
    /** A copy of `data` as a Uint8Array of the bundle's realm, which libsodium accepts. */
    bytes: (data) => new RealmBytes(data),
    wasm: vm.runInContext("typeof WebAssembly", context) !== "undefined",
  };
}

module.exports = { APP_JS, loadBundle };
