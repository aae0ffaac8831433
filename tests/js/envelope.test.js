/* The envelope writer the page ships (web/src/envelope.js inside static/app.js): PADMÉ and key
 * texts against values from the Python reference, and round trips through the JavaScript
 * reader, with WebAssembly and with libsodium's pure-JS fallback (Tor Browser "Safer").
 * tests/js/test_node.py opens the writer's output with the Python reader and the staff CLI. */
"use strict";

const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { spawnSync } = require("node:child_process");
const { test, before } = require("node:test");
const { loadBundle } = require("./bundle.js");
const { Decryptor } = require("./decryptor.js");

// From dropbox_envelope.padding.padme and dropbox_envelope.keys.PublicKey.encode().
const PADME = [[0, 0], [1, 1], [2, 2], [3, 3], [9, 10], [129, 144], [1000, 1024],
  [65436, 65536], [65536, 65536], [70000, 71680], [1048577, 1081344],
  [2147495993, 2214592512], [1099511627777, 1116691496960]];
const KEY_TEXT = "srdb1-x25519-ukgoclilwin625gvahikqo6olor5q52vhb4gscb2ypkc2rw2begmp4lpxq";
const KEY_HEX = "a28ce12d0bb21bed74d501d0a83bce5ba3d87755387869083ac3d42d46da090c";

let bundle;
before(async () => { bundle = await loadBundle(); });

function seal(b, recipients, files, fields, writeSize) {
  const env = b.SRDBEnvelope;
  const enc = new env.Encryptor(b.sodium, recipients);
  const out = enc.take();
  for (const file of files) {
    out.push(...enc.beginAttachment(file.name, file.type));
    const step = writeSize || file.data.length || 1;
    for (let pos = 0; pos < file.data.length; pos += step) {
      out.push(...enc.write(b.bytes(file.data.subarray(pos, pos + step))));
    }
    out.push(...enc.endAttachment());
  }
  out.push(...enc.finish(fields));
  const envelope = env.concat(out);
  assert.equal(envelope.length, enc.ciphertextBytes);
  return envelope;
}

function open(b, secrets, envelope) {
  const d = new Decryptor(b, secrets);
  d.feed(envelope);
  return d.close();
}

/** The text form of a public key (docs/PROTOCOL.md §5.1); the page only ever decodes. */
function KEY_TEXT_OF(raw) {
  const prefix = "srdb1-x25519-";
  const { sodium, SRDBEnvelope: env } = bundle;
  const check = sodium.crypto_generichash(32, env.concat([bundle.bytes(Buffer.from(prefix)), raw]));
  const body = Buffer.concat([Buffer.from(raw), Buffer.from(check.subarray(0, 4))]);
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of body) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += alphabet[(value >>> bits) & 31];
    }
    value &= (1 << bits) - 1;
  }
  if (bits) out += alphabet[(value << (5 - bits)) & 31];
  return prefix + out;
}

function keypair(b) {
  const pair = b.sodium.crypto_box_keypair();
  return { publicKey: pair.publicKey, privateKey: pair.privateKey };
}

test("the bundle runs libsodium's WebAssembly build here", () => {
  assert.equal(bundle.wasm, true);
});

test("padme matches the Python reference", () => {
  for (const [length, padded] of PADME) {
    assert.equal(bundle.SRDBEnvelope.padme(length), padded, String(length));
  }
});

test("public key text: decoded, and every defect refused", () => {
  const { sodium, SRDBEnvelope: env } = bundle;
  assert.equal(env.toHex(env.decodePublicKey(sodium, `  ${KEY_TEXT}\n`)), KEY_HEX);
  assert.equal(KEY_TEXT_OF(sodium.from_hex(KEY_HEX)), KEY_TEXT);
  const bad = [
    KEY_TEXT.replace("x25519", "ed25519"),
    KEY_TEXT.slice(0, -1),
    `${KEY_TEXT}a`,
    KEY_TEXT.slice(0, 20) + (KEY_TEXT[20] === "a" ? "b" : "a") + KEY_TEXT.slice(21),
    KEY_TEXT.slice(0, -1) + "r", // unused low bits of the last character set
    KEY_TEXT.toUpperCase(),
  ];
  for (const text of bad) assert.throws(() => env.decodePublicKey(sodium, text), text);
});

const SHAPES = {
  "no attachments, empty message": { files: [], fields: { kind: "report" } },
  "one empty attachment": { files: [{ name: "empty.txt", type: "text/plain", size: 0 }] },
  "one chunk exactly": { files: [{ name: "a.bin", type: "", size: 65536 }] },
  "a chunk and a byte": { files: [{ name: "b.bin", type: "application/pdf", size: 65537 }] },
  "three MiB in odd writes": {
    files: [{ name: "video.mp4", type: "video/mp4", size: 3 * 1024 * 1024 + 5 }],
    writeSize: 100003,
  },
  "several files, non-ASCII": {
    files: [{ name: "фото 1.jpg", type: "image/jpeg", size: 1234 },
      { name: "📄".repeat(255), type: "text/plain", size: 7 },
      { name: "نموذج.pdf", type: "application/pdf", size: 70001 }],
    fields: { kind: "report", language: "ar", message: "سطر\nline two ✓",
      answers: { what_happening: ["not_paid", "threats"], reporter: "victim", town: "Łódź" },
      extra: { questionnaire: "default-en-1" } },
  },
};

for (const [name, shape] of Object.entries(SHAPES)) {
  test(`round trip: ${name}`, () => {
    const b = bundle;
    const files = shape.files.map((f) => ({ ...f, data: crypto.randomBytes(f.size) }));
    const fields = shape.fields || { kind: "report", language: "en", message: "hello" };
    const me = keypair(b);
    const other = keypair(b);
    const envelope = seal(b, [other.publicKey, me.publicKey], files, fields, shape.writeSize);
    const { manifest, attachments } = open(b, [me.privateKey], envelope);
    assert.equal(manifest.version, 1);
    assert.equal(manifest.kind, fields.kind);
    assert.equal(manifest.message, fields.message || "");
    assert.equal(manifest.language, fields.language || "");
    assert.deepEqual(manifest.answers, fields.answers || {});
    for (const [k, v] of Object.entries(fields.extra || {})) assert.deepEqual(manifest[k], v);
    assert.equal(attachments.length, files.length);
    files.forEach((f, i) => {
      assert.ok(Buffer.from(attachments[i]).equals(f.data), f.name);
      assert.deepEqual(manifest.attachments[i], { name: f.name, type: f.type || "application/octet-stream",
        size: f.size, sha256: crypto.createHash("sha256").update(f.data).digest("hex") });
    });
    // Framing: header, 24-byte secretstream header, then only full chunks but the last.
    assert.equal(Buffer.from(envelope.subarray(0, 8)).toString("latin1"), "SRDB-ENV");
    assert.equal(envelope[9], 2);
  });
}

test("without WebAssembly (pure-JS fallback) the envelope opens with the other build", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "srdb-js-"));
  try {
    const me = keypair(bundle);
    const data = crypto.randomBytes(200000);
    fs.writeFileSync(path.join(dir, "x.bin"), data);
    const job = { recipients: [KEY_TEXT_OF(me.publicKey)], envelopes: [{
      out: path.join(dir, "out.srdb"), fields: { kind: "report", message: "slow path" },
      files: [{ name: "x.bin", type: "", path: path.join(dir, "x.bin") }], write_size: 65536 }] };
    const run = spawnSync(process.execPath, [path.join(__dirname, "seal_cli.js"), "--no-wasm"],
      { input: JSON.stringify(job), encoding: "utf8" });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(JSON.parse(run.stdout.trim()).wasm, false);
    const envelope = bundle.bytes(fs.readFileSync(path.join(dir, "out.srdb")));
    const { manifest, attachments } = open(bundle, [me.privateKey], envelope);
    assert.equal(manifest.message, "slow path");
    assert.ok(Buffer.from(attachments[0]).equals(data));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the writer refuses what a reader would reject", () => {
  const b = bundle;
  const env = b.SRDBEnvelope;
  const me = keypair(b);
  const enc = () => new env.Encryptor(b.sodium, [me.publicKey]);
  assert.throws(() => new env.Encryptor(b.sodium, []));
  assert.throws(() => new env.Encryptor(b.sodium, [me.publicKey, me.publicKey]));
  assert.throws(() => enc().beginAttachment("", "text/plain"));
  assert.throws(() => enc().beginAttachment("x".repeat(256), "text/plain"));
  assert.throws(() => enc().beginAttachment("bad\ud800name", "text/plain"));
  assert.throws(() => enc().finish({ kind: "report", message: "lone \udc00 surrogate" }));
  assert.throws(() => enc().finish({ kind: "complaint" }));
  assert.throws(() => enc().finish({ kind: "report", language: "x".repeat(36) }));
  const e = enc();
  e.beginAttachment("a", "");
  assert.throws(() => e.finish({ kind: "report" }));
});
