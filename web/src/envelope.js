/* Safe Report Drop Box envelope format, version 1: the sender side (docs/PROTOCOL.md).
 *
 * Byte for byte what dropbox_envelope.Encryptor writes, built only from libsodium
 * (libsodium-wrappers-sumo): crypto_box_seal for the recipient stanzas, keyed
 * crypto_generichash (BLAKE2b-256) for the subkeys and the header MAC,
 * crypto_secretstream_xchacha20poly1305 for the payload, crypto_hash_sha256 for the attachment
 * digests in the manifest. No primitive is written here; this file only lays out bytes.
 *
 * Sans I/O: every method takes plaintext and returns the ciphertext pieces (Uint8Array) to
 * append, in order, so the caller decides how to read files and where the pieces go.
 *
 * Loaded as a classic script (window.SRDBEnvelope) or with require() in node. */
(function (root, factory) {
  "use strict";
  if (typeof module === "object" && module.exports) {
    module.exports = factory();
  } else {
    root.SRDBEnvelope = factory();
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  var MAGIC = [0x53, 0x52, 0x44, 0x42, 0x2d, 0x45, 0x4e, 0x56]; // "SRDB-ENV"
  var VERSION = 1;
  var MAX_STANZAS = 16;
  var STANZA_X25519 = 0x01;
  var X25519_STANZA_BYTES = 80; // 32-byte file key + crypto_box_SEALBYTES
  var FILE_KEY_BYTES = 32;
  var CHUNK_SIZE = 65536;
  var ABYTES = 17;
  var RECORD_END = 0x00;
  var RECORD_DATA = 0x01;
  var RECORD_ATTACHMENT_END = 0x02;
  var RECORD_MANIFEST = 0x03;
  var MAX_DATA_BODY = 1024 * 1024;
  var MAX_MANIFEST_BODY = 8 * 1024 * 1024;
  var MAX_ATTACHMENTS = 1000;
  var MAX_NAME_CHARS = 255;
  var MAX_LANGUAGE_CHARS = 35;
  var MAX_MESSAGE_CHARS = 1000000;
  var PAYLOAD_KEY_LABEL = "srdb v1 payload key";
  var MAC_KEY_LABEL = "srdb v1 header mac key";
  var X25519_PREFIX = "srdb1-x25519-";
  var B32_CHARS = 58;
  var B32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";
  var LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]/;

  var utf8 = new TextEncoder();

  /** Characters as the format counts them: Unicode code points, not UTF-16 units. */
  function codePoints(text) {
    var n = 0;
    for (var i = 0; i < text.length; i++) {
      var c = text.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
        var d = text.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) i++;
      }
      n++;
    }
    return n;
  }

  function hasLoneSurrogate(text) {
    return LONE_SURROGATE.test(text);
  }

  /** PADMÉ (docs/PROTOCOL.md §4): the padded length for a plaintext of `length` bytes.
   * Plain arithmetic rather than 32-bit operators, so lengths over 2 GiB stay exact. */
  function padme(length) {
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError("bad length");
    if (length < 2) return length;
    var e = length.toString(2).length - 1; // floor(log2 L)
    var s = e.toString(2).length; // floor(log2 E) + 1
    var step = Math.pow(2, e - s);
    return Math.ceil(length / step) * step;
  }

  function u32(n) {
    return new Uint8Array([(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
  }

  function recordHeader(type, length) {
    var head = new Uint8Array(5);
    head[0] = type;
    head.set(u32(length), 1);
    return head;
  }

  function concat(parts) {
    var total = 0;
    parts.forEach(function (p) { total += p.length; });
    var out = new Uint8Array(total);
    var pos = 0;
    parts.forEach(function (p) { out.set(p, pos); pos += p.length; });
    return out;
  }

  function toHex(bytes) {
    var out = "";
    for (var i = 0; i < bytes.length; i++) out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    return out;
  }

  // -- keys (docs/PROTOCOL.md §5.1) ------------------------------------------------------------

  function base32Decode(text) {
    var bits = 0;
    var value = 0;
    var out = [];
    for (var i = 0; i < text.length; i++) {
      var v = B32_ALPHABET.indexOf(text[i]);
      if (v < 0) throw new Error("the key contains characters that are not base32");
      value = (value << 5) | v;
      bits += 5;
      if (bits >= 8) {
        bits -= 8;
        out.push((value >>> bits) & 255);
      }
      value &= (1 << bits) - 1;
    }
    // Canonical form: the unused low bits of the last character must be zero.
    if (value !== 0) throw new Error("the key's checksum does not match");
    return new Uint8Array(out);
  }

  /** The raw 32 bytes of an `srdb1-x25519-...` public key text; throws on any defect. */
  function decodePublicKey(sodium, text) {
    text = String(text).trim();
    if (text.indexOf(X25519_PREFIX) !== 0) throw new Error("not an srdb1 X25519 public key");
    var encoded = text.slice(X25519_PREFIX.length);
    if (encoded.length !== B32_CHARS) throw new Error("the key has the wrong length");
    var body = base32Decode(encoded);
    if (body.length !== 36) throw new Error("the key has the wrong length");
    var raw = body.slice(0, 32);
    var check = sodium.crypto_generichash(32, concat([utf8.encode(X25519_PREFIX), raw]));
    if (!sodium.memcmp(check.slice(0, 4), body.slice(32))) {
      throw new Error("the key's checksum does not match");
    }
    return raw;
  }

  // -- header (docs/PROTOCOL.md §1-2) ----------------------------------------------------------

  function keyedBlake2b(sodium, key, message) {
    return sodium.crypto_generichash(32, message, key);
  }

  function deriveKeys(sodium, fileKey) {
    return {
      payload: keyedBlake2b(sodium, fileKey, utf8.encode(PAYLOAD_KEY_LABEL)),
      mac: keyedBlake2b(sodium, fileKey, utf8.encode(MAC_KEY_LABEL)),
    };
  }

  function buildHeader(sodium, recipients, fileKey) {
    if (!recipients.length) throw new Error("an envelope needs at least one recipient");
    if (recipients.length > MAX_STANZAS) throw new Error("too many recipient keys");
    var seen = {};
    var parts = [new Uint8Array(MAGIC), new Uint8Array([VERSION, recipients.length])];
    recipients.forEach(function (key) {
      var hex = toHex(key);
      if (seen[hex]) throw new Error("the same recipient key is listed twice");
      seen[hex] = true;
      var body = sodium.crypto_box_seal(fileKey, key);
      if (body.length !== X25519_STANZA_BYTES) throw new Error("unexpected sealed box size");
      parts.push(new Uint8Array([STANZA_X25519, 0, body.length]), body);
    });
    var signed = concat(parts);
    var mac = keyedBlake2b(sodium, deriveKeys(sodium, fileKey).mac, signed);
    return concat([signed, mac]);
  }

  // -- the encryptor ---------------------------------------------------------------------------

  /**
   * Builds one envelope sealed to `recipients` (raw 32-byte X25519 public keys).
   * Call beginAttachment/write/endAttachment for each file, then finish(). Every method
   * returns an array of ciphertext pieces to append in order; `header` pieces come first from
   * the constructor's `take()`.
   */
  function Encryptor(sodium, recipients, options) {
    options = options || {};
    var fileKey = options.fileKey ? options.fileKey.slice() : sodium.randombytes_buf(FILE_KEY_BYTES);
    this._sodium = sodium;
    this._out = [buildHeader(sodium, recipients, fileKey)];
    var keys = deriveKeys(sodium, fileKey);
    sodium.memzero(fileKey);
    var init = sodium.crypto_secretstream_xchacha20poly1305_init_push(keys.payload);
    sodium.memzero(keys.payload);
    sodium.memzero(keys.mac);
    this._state = init.state;
    this._out.push(init.header);
    this._chunk = new Uint8Array(CHUNK_SIZE); // plaintext waiting to be sealed
    this._fill = 0;
    this._plainTotal = 0;
    this._attachments = [];
    this._current = null;
    this._finished = false;
    this.ciphertextBytes = 0;
  }

  Encryptor.prototype.beginAttachment = function (name, mediaType) {
    if (this._current || this._finished) throw new Error("end the previous attachment first");
    if (this._attachments.length >= MAX_ATTACHMENTS) throw new Error("too many attachments");
    mediaType = mediaType || "application/octet-stream";
    var chars = codePoints(name);
    if (chars < 1 || chars > MAX_NAME_CHARS || codePoints(mediaType) > MAX_NAME_CHARS) {
      throw new Error("attachment names must be 1 to 255 characters");
    }
    if (hasLoneSurrogate(name) || hasLoneSurrogate(mediaType)) {
      throw new Error("attachment names must be valid Unicode text");
    }
    this._current = {
      name: name, type: mediaType, size: 0, hash: this._sodium.crypto_hash_sha256_init(),
    };
    return this.take();
  };

  /** Add bytes (a Uint8Array) of the current attachment. */
  Encryptor.prototype.write = function (data) {
    var current = this._current;
    if (!current) throw new Error("begin an attachment first");
    for (var start = 0; start < data.length; start += MAX_DATA_BODY) {
      var piece = data.subarray(start, Math.min(start + MAX_DATA_BODY, data.length));
      this._push(recordHeader(RECORD_DATA, piece.length));
      this._push(piece);
      this._sodium.crypto_hash_sha256_update(current.hash, piece);
      current.size += piece.length;
    }
    return this.take();
  };

  Encryptor.prototype.endAttachment = function () {
    var current = this._current;
    if (!current) throw new Error("no attachment is open");
    var digest = this._sodium.crypto_hash_sha256_final(current.hash);
    this._attachments.push({
      name: current.name, type: current.type, size: current.size, sha256: toHex(digest),
    });
    this._current = null;
    this._push(recordHeader(RECORD_ATTACHMENT_END, 0));
    return this.take();
  };

  /** The manifest object this envelope will carry (docs/PROTOCOL.md §4.1). */
  Encryptor.prototype.manifest = function (fields) {
    var doc = {};
    var extra = fields.extra || {};
    Object.keys(extra).forEach(function (k) { doc[k] = extra[k]; });
    doc.version = 1;
    doc.kind = fields.kind || "report";
    doc.language = fields.language || "";
    doc.message = fields.message || "";
    doc.answers = fields.answers || {};
    doc.attachments = this._attachments.slice();
    return doc;
  };

  /** Write the manifest, the END record, the padding and the final chunk. */
  Encryptor.prototype.finish = function (fields) {
    if (this._current) throw new Error("end the open attachment first");
    if (this._finished) throw new Error("the envelope is already finished");
    var doc = this.manifest(fields || {});
    if (doc.kind !== "report" && doc.kind !== "reply") throw new Error("unknown kind");
    if (codePoints(doc.language) > MAX_LANGUAGE_CHARS) throw new Error("language tag too long");
    if (codePoints(doc.message) > MAX_MESSAGE_CHARS) throw new Error("the message is too long");
    var json = JSON.stringify(doc);
    // Readers refuse lone surrogates, which JSON.stringify writes as \udXXX escapes.
    if (/\\ud[89a-f][0-9a-f]{2}/i.test(json)) throw new Error("the report contains invalid text");
    var body = utf8.encode(json);
    if (body.length > MAX_MANIFEST_BODY) throw new Error("the report is too long for one envelope");
    this._finished = true;
    this._push(recordHeader(RECORD_MANIFEST, body.length));
    this._push(body);
    this._push(recordHeader(RECORD_END, 0));
    var padding = padme(this._plainTotal) - this._plainTotal;
    var zeros = new Uint8Array(Math.min(padding, CHUNK_SIZE));
    while (padding > 0) {
      var take = Math.min(padding, zeros.length);
      this._push(zeros.subarray(0, take));
      padding -= take;
    }
    this._seal(this._chunk.subarray(0, this._fill), true);
    this._fill = 0;
    return this.take();
  };

  /** Ciphertext produced since the last call. */
  Encryptor.prototype.take = function () {
    var out = this._out;
    this._out = [];
    var self = this;
    out.forEach(function (p) { self.ciphertextBytes += p.length; });
    return out;
  };

  /** Append plaintext to the payload. A full chunk is sealed only once more bytes follow it,
   * so the last chunk is always still here for TAG_FINAL (docs/PROTOCOL.md §3). */
  Encryptor.prototype._push = function (bytes) {
    this._plainTotal += bytes.length;
    var pos = 0;
    while (pos < bytes.length) {
      if (this._fill === CHUNK_SIZE) {
        this._seal(this._chunk, false);
        this._fill = 0;
      }
      var take = Math.min(CHUNK_SIZE - this._fill, bytes.length - pos);
      this._chunk.set(bytes.subarray(pos, pos + take), this._fill);
      this._fill += take;
      pos += take;
    }
  };

  Encryptor.prototype._seal = function (plaintext, final) {
    var sodium = this._sodium;
    var tag = final ? sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
      : sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE;
    var ciphertext = sodium.crypto_secretstream_xchacha20poly1305_push(
      this._state, plaintext, null, tag);
    this._out.push(u32(ciphertext.length), ciphertext);
  };

  return {
    ABYTES: ABYTES,
    CHUNK_SIZE: CHUNK_SIZE,
    FILE_KEY_BYTES: FILE_KEY_BYTES,
    MAGIC: MAGIC,
    MAX_ATTACHMENTS: MAX_ATTACHMENTS,
    MAX_DATA_BODY: MAX_DATA_BODY,
    MAX_LANGUAGE_CHARS: MAX_LANGUAGE_CHARS,
    MAX_MANIFEST_BODY: MAX_MANIFEST_BODY,
    MAX_MESSAGE_CHARS: MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS: MAX_NAME_CHARS,
    MAX_STANZAS: MAX_STANZAS,
    STANZA_X25519: STANZA_X25519,
    VERSION: VERSION,
    X25519_STANZA_BYTES: X25519_STANZA_BYTES,
    Encryptor: Encryptor,
    codePoints: codePoints,
    concat: concat,
    decodePublicKey: decodePublicKey,
    deriveKeys: deriveKeys,
    hasLoneSurrogate: hasLoneSurrogate,
    keyedBlake2b: keyedBlake2b,
    padme: padme,
    toHex: toHex,
  };
});
