/* Every envelope test vector (tests/vectors/*.vec, README.md there) through the JavaScript
 * reader, with the libsodium the page ships: the expected outcome for each, the same whether
 * the envelope is fed at once or in small pieces, and the manifest and attachment digests of
 * every success vector. */
"use strict";

const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const { test, before } = require("node:test");
const { loadBundle } = require("./bundle.js");
const { Decryptor, EnvelopeError } = require("./decryptor.js");

const DIR = path.join(__dirname, "..", "vectors");
const OUTCOMES = ["success", "no match", "header failure", "payload failure",
  "unsupported version"];

function readVector(file) {
  const raw = fs.readFileSync(path.join(DIR, file));
  const split = raw.indexOf("\n\n");
  const meta = {};
  for (const line of raw.subarray(0, split).toString("ascii").split("\n")) {
    const at = line.indexOf(": ");
    const key = line.slice(0, at);
    (meta[key] = meta[key] || []).push(line.slice(at + 2));
  }
  return { meta, envelope: new Uint8Array(raw.subarray(split + 2)) };
}

function open(bundle, identity, envelope, piece) {
  const decryptor = new Decryptor(bundle, [identity]);
  try {
    for (let pos = 0; pos < envelope.length; pos += piece) {
      decryptor.feed(bundle.bytes(envelope.subarray(pos, pos + piece)));
    }
    return { outcome: "success", result: decryptor.close() };
  } catch (e) {
    if (!(e instanceof EnvelopeError)) throw e;
    return { outcome: e.outcome };
  }
}

const files = fs.readdirSync(DIR).filter((f) => f.endsWith(".vec")).sort();
let bundle;
before(async () => { bundle = await loadBundle(); });

test("the vector set is complete", () => {
  assert.ok(files.length >= 60, `only ${files.length} vectors`);
  for (const prefix of ["success_", "no_match_", "header_", "payload_"]) {
    assert.ok(files.some((f) => f.startsWith(prefix)), prefix);
  }
});

for (const file of files) {
  test(file, () => {
    const { meta, envelope } = readVector(file);
    const expect = meta.expect[0];
    assert.ok(OUTCOMES.includes(expect), expect);
    assert.equal(crypto.createHash("sha256").update(envelope).digest("hex"),
      meta["envelope-sha256"][0], "the vector file is damaged");
    const identity = bundle.sodium.from_hex(meta.identity[0]);
    for (const piece of [envelope.length || 1, 4096, 7]) {
      const { outcome, result } = open(bundle, identity, envelope, piece);
      assert.equal(outcome, expect, `fed in pieces of ${piece} bytes`);
      if (outcome !== "success") continue;
      assert.deepEqual(result.manifest, JSON.parse(meta.manifest[0]));
      const digests = result.attachments.map(
        (data) => crypto.createHash("sha256").update(data).digest("hex"));
      assert.deepEqual(digests, meta["attachment-sha256"] || []);
    }
  });
}
