// Pure logic of the Standard Webhooks adapter: no host imports here, so that
// `node --test adapters/webhook-js/test/` can exercise all of it.
//
// Values follow the shapes componentize-js expects at the WIT boundary:
// records are objects with camelCase fields, variants are `{ tag, val }` with
// the WIT case name as tag, option<T> is the value or `undefined`, and u64 is
// a BigInt.

/** Signatures older or newer than this are refused (Standard Webhooks' default). */
export const TOLERANCE_MS = 5 * 60 * 1000;
/** Retry-After default when a 429 does not say (ms). */
export const DEFAULT_THROTTLE_MS = 1000;
/** How much of an error body a rejection quotes (characters). */
export const MESSAGE_CHARS = 200;
/** The event type of every delivery this adapter sends. */
export const EVENT_TYPE = 'lead.upserted';

// ---------------------------------------------------------------- bytes ----

const encoder = new TextEncoder();

/** UTF-8 bytes of a string. */
export function utf8(text) {
  return encoder.encode(text);
}

/** Text of UTF-8 bytes; with `fatal`, invalid UTF-8 throws. */
export function fromUtf8(bytes, fatal = false) {
  return new TextDecoder('utf-8', { fatal }).decode(bytes);
}

/** Concatenation of byte arrays. */
export function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_INDEX = (() => {
  const t = new Int16Array(128).fill(-1);
  for (let i = 0; i < B64.length; i++) t[B64.charCodeAt(i)] = i;
  return t;
})();

/** Standard base64 (RFC 4648 §4, with padding). */
export function base64Encode(bytes) {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + B64[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += B64[n >> 18] + B64[(n >> 12) & 63] + '==';
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + '=';
  }
  return out;
}

/**
 * Decodes standard base64; padding is optional. Returns `null` for anything
 * that is not base64 (a signature that does not decode cannot match).
 */
export function base64Decode(text) {
  let s = text;
  if (s.length % 4 === 0 && s.endsWith('==')) s = s.slice(0, -2);
  else if (s.length % 4 === 0 && s.endsWith('=')) s = s.slice(0, -1);
  if (s.length % 4 === 1) return null;
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let bits = 0;
  let acc = 0;
  let at = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const v = c < 128 ? B64_INDEX[c] : -1;
    if (v < 0) return null;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (acc >> bits) & 0xff;
    }
  }
  // Leftover bits must be zero in canonical base64.
  if ((acc & ((1 << bits) - 1)) !== 0) return null;
  return out;
}

// ----------------------------------------------------------------- time ----

function pad(n, width) {
  return String(n).padStart(width, '0');
}

/**
 * ISO-8601 UTC with milliseconds and `Z` for a Unix time in ms, without
 * `Date` (the component is built without WASI clocks). Days-to-civil after
 * Howard Hinnant's algorithm; proleptic Gregorian calendar.
 */
export function isoFromMs(ms) {
  const t = Math.floor(Number(ms));
  const days = Math.floor(t / 86_400_000);
  const msOfDay = t - days * 86_400_000;
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const h = Math.floor(msOfDay / 3_600_000);
  const m = Math.floor((msOfDay % 3_600_000) / 60_000);
  const sec = Math.floor((msOfDay % 60_000) / 1000);
  const milli = msOfDay % 1000;
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T${pad(h, 2)}:${pad(m, 2)}:${pad(sec, 2)}.${pad(milli, 3)}Z`;
}

/** Unix seconds (the `webhook-timestamp` value) of a time in ms, as a string. */
export function unixSeconds(nowMs) {
  return (BigInt(nowMs) / 1000n).toString();
}

// ------------------------------------------------------------- outgoing ----

/** The `webhook-id`: the delivery's idempotency key, stable across retries. */
export function webhookId(delivery) {
  return delivery.idempotencyKey || delivery.id;
}

/** Value of a `config` entry (list of [key, value] pairs); empty counts as unset. */
export function configValue(config, key) {
  for (const [k, v] of config || []) {
    if (k === key && v !== '') return v;
  }
  return undefined;
}

/**
 * The JSON body of one delivery, serialized once: the bytes signed are the
 * bytes sent. Properties become an object; a later duplicate name wins.
 */
export function buildBody(delivery, nowMs) {
  const properties = Object.fromEntries(delivery.properties.map((p) => [p.name, p.value]));
  return JSON.stringify({
    type: EVENT_TYPE,
    timestamp: isoFromMs(nowMs),
    data: {
      idempotency_key: webhookId(delivery),
      properties,
    },
  });
}

/** What Standard Webhooks signs: `{id}.{timestamp}.{body}` as bytes. */
export function signedContent(id, timestamp, body) {
  const bodyBytes = typeof body === 'string' ? utf8(body) : body;
  return concatBytes(utf8(`${id}.${timestamp}.`), bodyBytes);
}

/** The `webhook-signature` header value for an HMAC. */
export function signatureHeader(mac) {
  return `v1,${base64Encode(mac)}`;
}

/** The HTTP request for one delivery (body bytes and signature already made). */
export function buildRequest(url, id, timestamp, bodyBytes, mac) {
  return {
    method: 'POST',
    url,
    headers: [
      { name: 'content-type', value: 'application/json' },
      { name: 'webhook-id', value: id },
      { name: 'webhook-timestamp', value: timestamp },
      { name: 'webhook-signature', value: signatureHeader(mac) },
    ],
    body: bodyBytes,
    timeoutMs: 15_000,
    kind: 'write',
  };
}

// ------------------------------------------------------------- outcomes ----

export const created = (id) => ({ tag: 'created', val: id });
export const duplicateOf = (id) => ({ tag: 'duplicate-of', val: id });
export const rateLimited = (ms) => ({ tag: 'rate-limited', val: BigInt(ms) });
/**
 * The kind of a refusal (`rejection-kind` in the WIT), from its rule: the
 * receiver refusing our credentials is `forbidden`, a malformed request
 * `validation`, the destination's own settings `config`.
 */
export function rejectionKind(rule) {
  if (rule === 'config') return 'config';
  if (rule === 'http_401' || rule === 'http_403') return 'forbidden';
  if (rule === 'http_400' || rule === 'http_422') return 'validation';
  if (rule === 'http_412') return 'conflict';
  return 'other';
}
export const rejected = (rule, message, field) => ({
  tag: 'rejected',
  val: { kind: rejectionKind(rule), field, rule, message },
});
export const retry = (reason, afterMs) => ({
  tag: 'retry',
  val: { kind: 'transient', afterMs: afterMs === undefined ? undefined : BigInt(afterMs), reason },
});

/** First value of a header, names compared case-insensitively. */
export function header(headers, name) {
  const wanted = name.toLowerCase();
  for (const h of headers || []) {
    if (h.name.toLowerCase() === wanted) return h.value.trim();
  }
  return undefined;
}

/** Retry-After in whole seconds → ms; `undefined` when absent or not a number. */
export function retryAfterMs(value) {
  if (value === undefined || !/^\s*\d+(\.\d+)?\s*$/.test(value)) return undefined;
  return Math.ceil(Number(value) * 1000);
}

/** The receiver's own id for the message: a JSON body's `id`, if any. */
export function responseId(bodyText) {
  try {
    const v = JSON.parse(bodyText);
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      if (typeof v.id === 'string' && v.id !== '') return v.id;
      if (typeof v.id === 'number' && Number.isFinite(v.id)) return String(v.id);
    }
  } catch {
    // Not JSON: the receiver gave no id.
  }
  return undefined;
}

/** First `MESSAGE_CHARS` characters (code points) of a text. */
export function excerpt(text) {
  return Array.from(text).slice(0, MESSAGE_CHARS).join('');
}

/** The outcome of one delivery from the receiver's answer. */
export function outcomeForResponse(response, id) {
  const status = response.status;
  const text = fromUtf8(response.body || new Uint8Array());
  if (status >= 200 && status < 300) return created(responseId(text) ?? id);
  if (status >= 300 && status < 400) return retry('redirect not followed');
  if (status === 409) return duplicateOf(responseId(text) ?? id);
  if (status === 410) {
    return rejected('endpoint_gone', excerpt(text) || 'the endpoint answered 410 Gone: it wants no more deliveries');
  }
  if (status === 429) {
    return rateLimited(retryAfterMs(header(response.headers, 'retry-after')) ?? DEFAULT_THROTTLE_MS);
  }
  if (status === 408 || (status >= 500 && status < 600)) {
    return retry(`endpoint answered ${status}`, retryAfterMs(header(response.headers, 'retry-after')));
  }
  if (status >= 400 && status < 500) return rejected(`http_${status}`, excerpt(text));
  return retry(`endpoint answered unexpected status ${status}`);
}

/**
 * The payload of an error thrown by a host import that returns
 * `result<_, E>`: componentize-js throws an Error whose `payload` is the
 * `E` variant (`{ tag, val }`).
 */
export function importErrorPayload(e) {
  if (e && typeof e === 'object' && 'payload' in e) return e.payload;
  return e;
}

function errorText(e) {
  if (e instanceof Error) return e.message;
  try {
    return typeof e === 'string' ? e : JSON.stringify(e, (_, v) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    return String(e);
  }
}

/** The outcome of one delivery when `http.send` failed (an `http-error`). */
export function outcomeForHttpError(err) {
  const p = importErrorPayload(err);
  switch (p && p.tag) {
    case 'host-not-allowed':
      return rejected('config', `host ${p.val} is not in the destination's allow-list`);
    case 'secret-not-granted':
      return rejected('config', `secret ${p.val} is not granted to the destination`);
    case 'invalid-request':
      return rejected('config', `invalid request: ${p.val}`);
    case 'timeout':
      return retry('endpoint did not answer in time');
    case 'response-too-large':
      return retry(`response over ${p.val} bytes`);
    case 'transport':
      return retry(`endpoint unreachable: ${p.val}`);
    default:
      return retry(`http send failed: ${errorText(err)}`);
  }
}

/** The outcome when the adapter itself failed on a delivery (never trap). */
export function outcomeForBug(e) {
  return retry(`adapter error: ${errorText(e)}`);
}

// ------------------------------------------------------------- incoming ----

/** Thrown by the verification steps; `payload` is the `webhook-error`. */
export class WebhookError extends Error {
  constructor(payload) {
    super(payload.tag + (payload.val ? `: ${payload.val}` : ''));
    this.payload = payload;
  }
}

export const malformed = (message) => new WebhookError({ tag: 'malformed', val: message });
export const badSignature = () => new WebhookError({ tag: 'bad-signature' });
export const staleTimestamp = () => new WebhookError({ tag: 'stale-timestamp' });

/**
 * The three Standard Webhooks headers of an incoming request; throws
 * `malformed` when one is missing and when the timestamp is not an integer.
 */
export function webhookHeaders(headers) {
  const out = {};
  for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
    const v = header(headers, name);
    if (v === undefined || v === '') throw malformed(`missing header ${name}`);
    out[name] = v;
  }
  if (!/^\d{1,15}$/.test(out['webhook-timestamp'])) {
    throw malformed('webhook-timestamp is not an integer number of seconds');
  }
  return { id: out['webhook-id'], timestamp: out['webhook-timestamp'], signature: out['webhook-signature'] };
}

/** Throws `stale-timestamp` unless `timestamp` (seconds) is within tolerance of now. */
export function checkTimestamp(timestamp, nowMs) {
  const diff = Number(nowMs) - Number(timestamp) * 1000;
  if (Math.abs(diff) > TOLERANCE_MS) throw staleTimestamp();
}

/**
 * The signatures of a `webhook-signature` header: space-separated
 * `version,base64` entries; only `v1` (HMAC-SHA256) ones are returned,
 * decoded; entries that do not decode are dropped.
 */
export function parseSignatureHeader(value) {
  const out = [];
  for (const entry of value.trim().split(/\s+/)) {
    const comma = entry.indexOf(',');
    if (comma < 0 || entry.slice(0, comma) !== 'v1') continue;
    const bytes = base64Decode(entry.slice(comma + 1));
    if (bytes) out.push(bytes);
  }
  return out;
}

function stringish(v) {
  if (v === undefined || v === null) return undefined;
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/**
 * The crm-event of a verified body:
 * `{"type":…,"timestamp":…,"data":{"id":…,"property":…,"value":…}}`.
 */
export function parseEvent(body, id, timestamp) {
  let doc;
  try {
    doc = JSON.parse(fromUtf8(body, true));
  } catch (e) {
    throw malformed(`body is not JSON: ${e.message}`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw malformed('body is not a JSON object');
  if (typeof doc.type !== 'string' || doc.type === '') throw malformed('body has no "type"');
  const data = doc.data && typeof doc.data === 'object' && !Array.isArray(doc.data) ? doc.data : {};
  return {
    kind: doc.type,
    objectId: stringish(data.id) ?? id,
    occurredAtMs: BigInt(timestamp) * 1000n,
    propertyName: stringish(data.property),
    propertyValue: stringish(data.value),
  };
}
