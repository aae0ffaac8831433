/* Seals envelopes with the shipped page script, for checks from outside node's test runner:
 *
 *   node tests/js/seal_cli.js [--no-wasm] < job.json
 *
 * job.json: {"recipients": ["srdb1-x25519-..."], "envelopes": [{"out": PATH, "fields": {...},
 * "files": [{"name", "type", "path"}], "write_size": N}]}. Prints a JSON line per envelope:
 * {"out", "bytes", "seconds", "wasm"}. tests/js/test_node.py opens them with the Python reader
 * and `dropbox-client decrypt`; envelope.test.js uses --no-wasm (a process of its own, because
 * libsodium reports the missing WebAssembly as an unhandled rejection before falling back). */
"use strict";

const fs = require("node:fs");
const { loadBundle } = require("./bundle.js");

async function main() {
  const wasm = !process.argv.includes("--no-wasm");
  if (!wasm) {
    process.on("unhandledRejection", (e) => {
      if (!/WebAssembly/.test(String(e))) throw e;
    });
  }
  const job = JSON.parse(fs.readFileSync(0, "utf8"));
  const b = await loadBundle({ wasm });
  const env = b.SRDBEnvelope;
  const keys = job.recipients.map((text) => env.decodePublicKey(b.sodium, text));
  for (const spec of job.envelopes) {
    const started = process.hrtime.bigint();
    const enc = new env.Encryptor(b.sodium, keys);
    const fd = fs.openSync(spec.out, "w");
    const emit = (pieces) => { for (const p of pieces) fs.writeSync(fd, p); };
    emit(enc.take());
    for (const file of spec.files || []) {
      const data = fs.readFileSync(file.path);
      emit(enc.beginAttachment(file.name, file.type));
      const step = spec.write_size || 1024 * 1024;
      for (let pos = 0; pos < data.length; pos += step) {
        emit(enc.write(b.bytes(data.subarray(pos, pos + step))));
      }
      emit(enc.endAttachment());
    }
    emit(enc.finish(spec.fields || {}));
    fs.closeSync(fd);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    console.log(JSON.stringify({ out: spec.out, bytes: enc.ciphertextBytes, seconds, wasm: b.wasm }));
  }
}

main().catch((e) => { console.error(e && e.stack ? e.stack : e); process.exit(1); });
