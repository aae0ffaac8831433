/* A reader of the envelope format in JavaScript, for the tests: it runs every vector in
 * tests/vectors/ and opens what web/src/envelope.js writes, with libsodium only, so the format
 * is checked from a second language against the same spec (docs/PROTOCOL.md).
 *
 * Outcomes mirror tests/vectors/README.md: an EnvelopeError's `outcome` is one of
 * "no match", "header failure", "payload failure", "unsupported version". */
"use strict";

// The format's helpers and constants come from the bundle under test (web/src/envelope.js),
// so that every byte array this reader makes belongs to the same JavaScript realm as the
// libsodium it calls (libsodium-wrappers checks `instanceof Uint8Array`).
let concat, codePoints, deriveKeys, keyedBlake2b, padme, toHex, hasLoneSurrogate;
let CHUNK_SIZE, ABYTES, MAGIC, MAX_STANZAS, STANZA_X25519, X25519_STANZA_BYTES, MAX_DATA_BODY,
  MAX_MANIFEST_BODY, MAX_ATTACHMENTS, MAX_NAME_CHARS, MAX_LANGUAGE_CHARS, MAX_MESSAGE_CHARS;

function use(env) {
  ({ concat, codePoints, deriveKeys, keyedBlake2b, padme, toHex, hasLoneSurrogate, CHUNK_SIZE,
    ABYTES, MAGIC, MAX_STANZAS, STANZA_X25519, X25519_STANZA_BYTES, MAX_DATA_BODY,
    MAX_MANIFEST_BODY, MAX_ATTACHMENTS, MAX_NAME_CHARS, MAX_LANGUAGE_CHARS,
    MAX_MESSAGE_CHARS } = env);
}

const MAX_STANZA_BODY = 1024;
const MAC_BYTES = 32;
const SS_HEADER_BYTES = 24;

class EnvelopeError extends Error {
  constructor(outcome, message) {
    super(message);
    this.outcome = outcome;
  }
}
const headerFailure = (m) => new EnvelopeError("header failure", m);
const payloadFailure = (m) => new EnvelopeError("payload failure", m);

function readU32(bytes, pos) {
  return ((bytes[pos] << 24) >>> 0) + (bytes[pos + 1] << 16) + (bytes[pos + 2] << 8) +
    bytes[pos + 3];
}

/** Parses the header incrementally; returns {stanzas, signed, mac, size} once complete. */
function parseHeader(buf) {
  if (buf.length < 8) {
    for (let i = 0; i < buf.length; i++) {
      if (buf[i] !== MAGIC[i]) throw headerFailure("not an envelope (wrong magic bytes)");
    }
    return null;
  }
  for (let i = 0; i < 8; i++) {
    if (buf[i] !== MAGIC[i]) throw headerFailure("not an envelope (wrong magic bytes)");
  }
  if (buf.length < 10) return null;
  if (buf[8] !== 1) throw new EnvelopeError("unsupported version", `version ${buf[8]}`);
  const count = buf[9];
  if (count < 1 || count > MAX_STANZAS) throw headerFailure("bad stanza count");
  let pos = 10;
  const stanzas = [];
  for (let i = 0; i < count; i++) {
    if (buf.length < pos + 3) return null;
    const type = buf[pos];
    const length = (buf[pos + 1] << 8) | buf[pos + 2];
    if (length > MAX_STANZA_BODY) throw headerFailure("a recipient stanza is too long");
    if (type === STANZA_X25519 && length !== X25519_STANZA_BYTES) {
      throw headerFailure("an X25519 stanza has the wrong length");
    }
    if (buf.length < pos + 3 + length) return null;
    stanzas.push({ type, body: buf.slice(pos + 3, pos + 3 + length) });
    pos += 3 + length;
  }
  if (buf.length < pos + MAC_BYTES) return null;
  return { stanzas, signed: buf.slice(0, pos), mac: buf.slice(pos, pos + MAC_BYTES),
    size: pos + MAC_BYTES };
}

function unwrap(sodium, header, identities) {
  for (const stanza of header.stanzas) {
    if (stanza.type !== STANZA_X25519 || stanza.body.length !== X25519_STANZA_BYTES) continue;
    for (const secret of identities) {
      let fileKey;
      try {
        fileKey = sodium.crypto_box_seal_open(stanza.body,
          sodium.crypto_scalarmult_base(secret), secret);
      } catch (e) {
        continue;
      }
      if (!fileKey || fileKey.length !== 32) throw headerFailure("file key of the wrong size");
      const mac = keyedBlake2b(sodium, deriveKeys(sodium, fileKey).mac, header.signed);
      if (!sodium.memcmp(mac, header.mac)) throw headerFailure("the header MAC does not match");
      return fileKey;
    }
  }
  throw new EnvelopeError("no match", "none of the identities opens a stanza");
}

function checkManifest(raw, received) {
  let text;
  let doc;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
    doc = JSON.parse(text);
  } catch (e) {
    throw payloadFailure("the manifest is not valid UTF-8 JSON");
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw payloadFailure("the manifest is not a JSON object");
  }
  const strings = [];
  (function walk(value) {
    if (typeof value === "string") strings.push(value);
    else if (value && typeof value === "object") {
      for (const [k, v] of Object.entries(value)) { strings.push(k); walk(v); }
    }
  })(doc);
  if (strings.some(hasLoneSurrogate)) throw payloadFailure("invalid Unicode text");
  // JSON.parse reads 1.0 as 1; the spec wants JSON integers for these two members.
  if (/"(version|size)"\s*:\s*-?\d+(\.|[eE])/.test(text)) {
    throw payloadFailure("a version or size that is not a JSON integer");
  }
  if (doc.version !== 1) throw new EnvelopeError("unsupported version", "manifest version");
  if (doc.kind !== "report" && doc.kind !== "reply") throw payloadFailure("bad kind");
  const textField = (key, limit) => {
    const value = key in doc ? doc[key] : "";
    if (typeof value !== "string" || codePoints(value) > limit) {
      throw payloadFailure(`bad ${key}`);
    }
  };
  textField("language", MAX_LANGUAGE_CHARS);
  textField("message", MAX_MESSAGE_CHARS);
  const answers = "answers" in doc ? doc.answers : {};
  if (answers === null || typeof answers !== "object" || Array.isArray(answers)) {
    throw payloadFailure("answers must be an object");
  }
  const items = "attachments" in doc ? doc.attachments : [];
  if (!Array.isArray(items) || items.length > MAX_ATTACHMENTS) {
    throw payloadFailure("bad attachment list");
  }
  for (const item of items) {
    if (item === null || typeof item !== "object" || Array.isArray(item)) {
      throw payloadFailure("bad attachment entry");
    }
    const { name, type, size, sha256 } = item;
    if (typeof name !== "string" || codePoints(name) < 1 || codePoints(name) > MAX_NAME_CHARS) {
      throw payloadFailure("bad attachment name");
    }
    if (typeof type !== "string" || codePoints(type) > MAX_NAME_CHARS) {
      throw payloadFailure("bad attachment type");
    }
    if (!Number.isSafeInteger(size) || size < 0) throw payloadFailure("bad attachment size");
    if (typeof sha256 !== "string" || !/^[0-9a-f]{64}$/.test(sha256)) {
      throw payloadFailure("bad attachment sha256");
    }
  }
  if (items.length !== received.length) throw payloadFailure("attachment count differs");
  items.forEach((item, i) => {
    if (item.size !== received[i].size || item.sha256 !== received[i].sha256) {
      throw payloadFailure("an attachment differs from the manifest");
    }
  });
  return doc;
}

/** The plaintext record grammar and padding (docs/PROTOCOL.md §4). */
class RecordParser {
  constructor(sodium) {
    this.sodium = sodium;
    this.head = [];
    this.type = -1;
    this.remaining = 0;
    this.manifestParts = [];
    this.manifestSeen = false;
    this.inAttachment = false;
    this.attachments = [];
    this.current = null;
    this.manifest = null;
    this.endedAt = null;
    this.total = 0;
  }

  feed(plain) {
    const start = this.total;
    this.total += plain.length;
    let pos = 0;
    if (this.endedAt !== null) {
      if (plain.some((b) => b !== 0)) throw payloadFailure("non-zero padding");
      return;
    }
    while (pos < plain.length) {
      if (this.type === -1) {
        while (this.head.length < 5 && pos < plain.length) this.head.push(plain[pos++]);
        if (this.head.length < 5) break;
        const type = this.head[0];
        const length = readU32(this.head, 1);
        this.head = [];
        this.start(type, length);
        if (type === 0) {
          this.endedAt = start + pos;
          if (plain.subarray(pos).some((b) => b !== 0)) throw payloadFailure("non-zero padding");
          return;
        }
        if (length === 0) this.finishRecord();
        continue;
      }
      const take = Math.min(this.remaining, plain.length - pos);
      const piece = plain.subarray(pos, pos + take);
      if (this.type === 1) {
        this.sodium.crypto_hash_sha256_update(this.current.hash, piece);
        this.current.size += take;
        this.current.parts.push(piece.slice());
      } else {
        this.manifestParts.push(piece.slice());
      }
      pos += take;
      this.remaining -= take;
      if (this.remaining === 0) this.finishRecord();
    }
  }

  start(type, length) {
    if (this.manifestSeen && type !== 0) throw payloadFailure("a record after the manifest");
    if (type === 1) {
      if (length === 0 || length > MAX_DATA_BODY) throw payloadFailure("bad DATA length");
      if (!this.inAttachment) {
        if (this.attachments.length >= MAX_ATTACHMENTS) throw payloadFailure("too many");
        this.inAttachment = true;
        this.openAttachment();
      }
    } else if (type === 2) {
      if (length !== 0) throw payloadFailure("ATTACHMENT_END not empty");
      if (this.attachments.length >= MAX_ATTACHMENTS) throw payloadFailure("too many");
      if (!this.inAttachment) this.openAttachment();
    } else if (type === 3) {
      if (this.inAttachment) throw payloadFailure("manifest after an unterminated attachment");
      if (length === 0 || length > MAX_MANIFEST_BODY) throw payloadFailure("bad manifest length");
      this.manifestSeen = true;
    } else if (type === 0) {
      if (length !== 0) throw payloadFailure("END not empty");
      if (!this.manifestSeen) throw payloadFailure("END before the manifest");
    } else {
      throw payloadFailure(`unknown record type ${type}`);
    }
    this.type = type;
    this.remaining = length;
  }

  openAttachment() {
    this.current = { size: 0, hash: this.sodium.crypto_hash_sha256_init(), parts: [] };
  }

  finishRecord() {
    if (this.type === 2) {
      const c = this.current;
      this.attachments.push({ size: c.size,
        sha256: toHex(this.sodium.crypto_hash_sha256_final(c.hash)), data: concat(c.parts) });
      this.current = null;
      this.inAttachment = false;
    } else if (this.type === 3) {
      this.manifest = checkManifest(concat(this.manifestParts), this.attachments);
      this.manifestParts = [];
    }
    this.type = -1;
  }
}

/** Opens one envelope fed in pieces of any size; close() returns {manifest, attachments}.
 * `bundle` is {sodium, SRDBEnvelope} from bundle.js; feed it that realm's Uint8Arrays. */
class Decryptor {
  constructor(bundle, identities) {
    use(bundle.SRDBEnvelope);
    const sodium = bundle.sodium;
    this.sodium = sodium;
    this.identities = identities;
    this.buf = null;
    this.header = null;
    this.state = null;
    this.finished = false;
    this.chunks = 0;
    this.lastLength = 0;
    this.records = new RecordParser(sodium);
  }

  feed(data) {
    this.buf = this.buf === null ? data.slice() : concat([this.buf, data]);
    if (this.header === null) {
      const header = parseHeader(this.buf);
      if (header === null) {
        if (this.buf.length > 10 + MAX_STANZAS * (3 + MAX_STANZA_BODY) + MAC_BYTES) {
          throw headerFailure("the header is too long");
        }
        return;
      }
      const fileKey = unwrap(this.sodium, header, this.identities);
      this.payloadKey = deriveKeys(this.sodium, fileKey).payload;
      this.header = header;
      this.buf = this.buf.slice(header.size);
    }
    this.frames();
  }

  frames() {
    const sodium = this.sodium;
    for (;;) {
      if (this.finished) {
        if (this.buf.length) throw payloadFailure("data after the final chunk");
        return;
      }
      if (this.state === null) {
        if (this.buf.length < SS_HEADER_BYTES) return;
        try {
          this.state = sodium.crypto_secretstream_xchacha20poly1305_init_pull(
            this.buf.slice(0, SS_HEADER_BYTES), this.payloadKey);
        } catch (e) {
          throw payloadFailure("bad secretstream header");
        }
        this.buf = this.buf.slice(SS_HEADER_BYTES);
        continue;
      }
      if (this.buf.length < 4) return;
      const length = readU32(this.buf, 0);
      if (length > CHUNK_SIZE + ABYTES) throw payloadFailure("chunk over the maximum");
      if (length < 1 + ABYTES) throw payloadFailure("chunk under the minimum");
      if (this.chunks && this.lastLength !== CHUNK_SIZE + ABYTES) {
        throw payloadFailure("data follows the final chunk");
      }
      if (this.buf.length < 4 + length) return;
      const frame = this.buf.slice(4, 4 + length);
      this.buf = this.buf.slice(4 + length);
      this.chunks++;
      this.lastLength = length;
      let result;
      try {
        result = sodium.crypto_secretstream_xchacha20poly1305_pull(this.state, frame, null);
      } catch (e) {
        result = false;
      }
      if (!result) throw payloadFailure("failed to decrypt and authenticate a payload chunk");
      if (result.tag === sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
        this.finished = true;
      } else if (result.tag !== sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE ||
                 result.message.length !== CHUNK_SIZE) {
        throw payloadFailure("non-canonical chunk");
      }
      this.records.feed(result.message);
      if (this.finished) this.checkPadding();
    }
  }

  checkPadding() {
    const r = this.records;
    if (r.endedAt === null || r.manifest === null) throw payloadFailure("no manifest or END");
    if (r.total !== padme(r.endedAt)) throw payloadFailure("padding of the wrong length");
  }

  close() {
    if (this.header === null) throw headerFailure("truncated inside the header");
    if (!this.finished) throw payloadFailure("truncated: the final chunk is missing");
    return { manifest: this.records.manifest,
      attachments: this.records.attachments.map((a) => a.data) };
  }
}

module.exports = { Decryptor, EnvelopeError };
