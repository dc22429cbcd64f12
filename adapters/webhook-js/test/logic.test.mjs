// Unit tests of the adapter's pure logic (no component, no host):
//   node --test adapters/webhook-js/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';

import {
  base64Decode,
  base64Encode,
  buildBody,
  buildRequest,
  checkTimestamp,
  configValue,
  excerpt,
  header,
  isoFromMs,
  outcomeForBug,
  outcomeForHttpError,
  outcomeForResponse,
  parseEvent,
  parseSignatureHeader,
  responseId,
  retryAfterMs,
  signedContent,
  unixSeconds,
  utf8,
  webhookHeaders,
  webhookId,
  WebhookError,
} from '../logic.js';

const hmac = (key, bytes) => new Uint8Array(createHmac('sha256', key).update(bytes).digest());
const response = (status, body = '', headers = []) => ({ status, headers, body: utf8(body) });
const delivery = (over = {}) => ({
  id: 'job-1',
  idempotencyKey: 'lead-42:webhook',
  properties: [
    { name: 'email', value: 'jane@example.com' },
    { name: 'firstname', value: 'Jane' },
  ],
  ...over,
});

/** The `webhook-error` payload a verification step throws. */
function thrown(fn) {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof WebhookError, `expected a WebhookError, got ${e}`);
    return e.payload;
  }
  assert.fail('nothing thrown');
}

test('base64 matches Buffer for every length and byte value', () => {
  for (let n = 0; n < 70; n++) {
    const bytes = new Uint8Array(n).map((_, i) => (i * 97 + n * 31) & 0xff);
    const expected = Buffer.from(bytes).toString('base64');
    assert.equal(base64Encode(bytes), expected);
    assert.deepEqual(base64Decode(expected), bytes);
    assert.deepEqual(base64Decode(expected.replace(/=+$/, '')), bytes, 'padding is optional');
  }
  const all = new Uint8Array(256).map((_, i) => i);
  assert.equal(base64Encode(all), Buffer.from(all).toString('base64'));
});

test('base64Decode refuses what is not base64', () => {
  for (const bad of ['a', 'ab$d', 'é===', 'AB=C', 'abcde', 'QR==']) {
    assert.equal(base64Decode(bad), null, bad);
  }
});

test('isoFromMs agrees with Date#toISOString', () => {
  const fixed = [
    0, 1, 999, 1000, 86_399_999, 86_400_000, -1, -86_400_001,
    Date.UTC(2000, 1, 29, 12, 0, 0, 5), Date.UTC(1900, 1, 28, 23, 59, 59, 999),
    Date.UTC(2100, 2, 1), Date.UTC(2024, 11, 31, 23, 59, 59, 999), Date.UTC(9999, 11, 31, 23, 59, 59, 999),
    1_700_000_000_123,
  ];
  for (const ms of fixed) assert.equal(isoFromMs(ms), new Date(ms).toISOString(), String(ms));
  let x = 12345;
  for (let i = 0; i < 20_000; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const ms = Math.floor((x / 2 ** 31) * 8_000_000_000_000) - 1_000_000_000_000;
    assert.equal(isoFromMs(ms), new Date(ms).toISOString(), String(ms));
  }
  assert.equal(isoFromMs(1_700_000_000_123n), '2023-11-14T22:13:20.123Z', 'a BigInt from the clock import');
});

test('webhook-timestamp is whole Unix seconds', () => {
  assert.equal(unixSeconds(1_700_000_000_999n), '1700000000');
  assert.equal(unixSeconds(999), '0');
});

test('the body is the Standard Webhooks envelope of the lead', () => {
  const body = buildBody(delivery(), 1_700_000_000_123n);
  assert.equal(
    body,
    '{"type":"lead.upserted","timestamp":"2023-11-14T22:13:20.123Z","data":{"idempotency_key":"lead-42:webhook",' +
      '"properties":{"email":"jane@example.com","firstname":"Jane"}}}',
  );
});

test('properties: a later duplicate wins and odd names stay data', () => {
  const d = delivery({
    properties: [
      { name: 'a', value: '1' },
      { name: '__proto__', value: 'x' },
      { name: 'a', value: '2' },
    ],
  });
  const parsed = JSON.parse(buildBody(d, 0));
  assert.equal(parsed.data.properties.a, '2');
  assert.ok(Object.hasOwn(parsed.data.properties, '__proto__'));
  assert.equal(JSON.parse(buildBody(delivery({ properties: [] }), 0)).data.properties.constructor, Object);
});

test('webhook-id is the idempotency key, else the job id', () => {
  assert.equal(webhookId(delivery()), 'lead-42:webhook');
  assert.equal(webhookId(delivery({ idempotencyKey: '' })), 'job-1');
});

test('signature: the Standard Webhooks reference vector', () => {
  // From the standard-webhooks libraries' tests.
  const key = Buffer.from('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64');
  const content = signedContent('msg_p5jXN8AQM9LWM0D4loKWxJek', '1614265330', '{"test": 2432232314}');
  const req = buildRequest('https://x.example/hook', 'msg_p5jXN8AQM9LWM0D4loKWxJek', '1614265330', utf8('{}'), hmac(key, content));
  assert.equal(header(req.headers, 'Webhook-Signature'), 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
});

test('the request carries the four headers and the signed bytes', () => {
  const body = utf8(buildBody(delivery(), 1_700_000_000_123n));
  const mac = hmac('k', signedContent('id1', '1700000000', body));
  const req = buildRequest('https://hooks.example/in', 'id1', '1700000000', body, mac);
  assert.equal(req.method, 'POST');
  assert.equal(req.url, 'https://hooks.example/in');
  assert.deepEqual(
    req.headers.map((h) => h.name),
    ['content-type', 'webhook-id', 'webhook-timestamp', 'webhook-signature'],
  );
  assert.equal(header(req.headers, 'content-type'), 'application/json');
  assert.equal(header(req.headers, 'webhook-id'), 'id1');
  assert.equal(header(req.headers, 'webhook-timestamp'), '1700000000');
  assert.equal(req.body, body);
  const expected = createHmac('sha256', 'k')
    .update(`id1.1700000000.${Buffer.from(body).toString('utf8')}`)
    .digest('base64');
  assert.equal(header(req.headers, 'webhook-signature'), `v1,${expected}`);
  assert.equal(typeof req.timeoutMs, 'number', 'u32 is a plain number');
});

test('signed content is bytes: a non-ASCII body is signed as sent', () => {
  const body = '{"n":"Zoë 🚀"}';
  assert.deepEqual(signedContent('a', '1', body), utf8(`a.1.${body}`));
  assert.deepEqual(signedContent('a', '1', utf8(body)), utf8(`a.1.${body}`));
});

test('config lookup', () => {
  assert.equal(configValue([['url', 'https://a'], ['x', 'y']], 'url'), 'https://a');
  assert.equal(configValue([['url', '']], 'url'), undefined);
  assert.equal(configValue([], 'url'), undefined);
});

test('2xx: created with the receiver id, else the webhook-id', () => {
  assert.deepEqual(outcomeForResponse(response(200, '{"id":"msg_9"}'), 'wid'), { tag: 'created', val: 'msg_9' });
  assert.deepEqual(outcomeForResponse(response(201, '{"id":17}'), 'wid'), { tag: 'created', val: '17' });
  assert.deepEqual(outcomeForResponse(response(204), 'wid'), { tag: 'created', val: 'wid' });
  assert.deepEqual(outcomeForResponse(response(202, 'accepted'), 'wid'), { tag: 'created', val: 'wid' });
  assert.deepEqual(outcomeForResponse(response(200, '[{"id":"x"}]'), 'wid'), { tag: 'created', val: 'wid' });
});

test('409: duplicate of the receiver id or the webhook-id', () => {
  assert.deepEqual(outcomeForResponse(response(409, '{"id":"msg_1"}'), 'wid'), { tag: 'duplicate-of', val: 'msg_1' });
  assert.deepEqual(outcomeForResponse(response(409, 'dup'), 'wid'), { tag: 'duplicate-of', val: 'wid' });
});

test('410: endpoint gone', () => {
  const o = outcomeForResponse(response(410), 'wid');
  assert.equal(o.tag, 'rejected');
  assert.equal(o.val.rule, 'endpoint_gone');
  assert.equal(o.val.field, undefined);
  assert.ok(o.val.message.length > 0);
});

test('429: rate limited for Retry-After seconds, 1000 ms by default', () => {
  assert.deepEqual(outcomeForResponse(response(429, '', [{ name: 'Retry-After', value: '7' }]), 'w'), {
    tag: 'rate-limited',
    val: 7000n,
  });
  assert.deepEqual(outcomeForResponse(response(429), 'w'), { tag: 'rate-limited', val: 1000n });
  assert.deepEqual(
    outcomeForResponse(response(429, '', [{ name: 'retry-after', value: 'Wed, 21 Oct 2015 07:28:00 GMT' }]), 'w'),
    { tag: 'rate-limited', val: 1000n },
  );
  assert.equal(retryAfterMs(' 1.5 '), 1500);
  assert.equal(retryAfterMs('-1'), undefined);
});

test('408 and 5xx: retry', () => {
  for (const s of [408, 500, 502, 503, 599]) {
    const o = outcomeForResponse(response(s, 'down'), 'w');
    assert.equal(o.tag, 'retry', String(s));
    assert.match(o.val.reason, new RegExp(String(s)));
    assert.equal(o.val.afterMs, undefined);
  }
  const o = outcomeForResponse(response(503, '', [{ name: 'Retry-After', value: '30' }]), 'w');
  assert.equal(o.val.afterMs, 30_000n, 'u64 is a BigInt');
});

test('3xx: retry, redirects are not followed', () => {
  for (const s of [301, 302, 307, 308]) {
    assert.deepEqual(outcomeForResponse(response(s, '', [{ name: 'location', value: 'https://elsewhere' }]), 'w'), {
      tag: 'retry',
      val: { kind: 'transient', afterMs: undefined, reason: 'redirect not followed' },
    });
  }
});

test('other 4xx: rejected with the status and the first 200 characters', () => {
  const long = 'é'.repeat(150) + 'x'.repeat(150);
  const o = outcomeForResponse(response(422, long), 'w');
  assert.equal(o.tag, 'rejected');
  assert.equal(o.val.rule, 'http_422');
  assert.equal(o.val.kind, 'validation');
  assert.equal(o.val.message, 'é'.repeat(150) + 'x'.repeat(50));
  assert.equal(outcomeForResponse(response(400, 'bad'), 'w').val.message, 'bad');
  assert.equal(outcomeForResponse(response(401), 'w').val.rule, 'http_401');
  assert.equal(outcomeForResponse(response(401), 'w').val.kind, 'forbidden', 'the receiver refuses the signature');
  assert.equal(outcomeForResponse(response(404), 'w').val.kind, 'other');
  assert.equal(outcomeForResponse(response(404), 'w').val.rule, 'http_404');
  assert.equal(excerpt('🚀'.repeat(300)).length, 400, 'code points, not UTF-16 units');
});

test('odd statuses: retry', () => {
  assert.equal(outcomeForResponse(response(101), 'w').tag, 'retry');
  assert.equal(outcomeForResponse(response(600), 'w').tag, 'retry');
});

test('http-error: configuration faults are rejections, the rest retries', () => {
  // componentize-js throws an Error whose `payload` is the http-error variant.
  const thrownBy = (payload) => Object.defineProperty(new Error('x (see error.payload)'), 'payload', { value: payload });
  const cases = [
    [{ tag: 'host-not-allowed', val: 'evil.example' }, 'rejected', /evil\.example/],
    [{ tag: 'secret-not-granted', val: 'signing-key' }, 'rejected', /signing-key/],
    [{ tag: 'invalid-request', val: 'bad url' }, 'rejected', /bad url/],
    [{ tag: 'timeout' }, 'retry', /time/],
    [{ tag: 'response-too-large', val: 1048576n }, 'retry', /1048576/],
    [{ tag: 'transport', val: 'connection refused' }, 'retry', /connection refused/],
  ];
  for (const [payload, tag, text] of cases) {
    for (const err of [thrownBy(payload), payload]) {
      const o = outcomeForHttpError(err);
      assert.equal(o.tag, tag, payload.tag);
      if (tag === 'rejected') {
        assert.equal(o.val.rule, 'config');
        assert.match(o.val.message, text);
      } else {
        assert.match(o.val.reason, text);
      }
    }
  }
  assert.equal(outcomeForHttpError(new TypeError('boom')).tag, 'retry');
  assert.match(outcomeForBug(new TypeError('boom')).val.reason, /boom/);
  assert.match(outcomeForBug({ n: 1n }).val.reason, /1/);
});

test('responseId', () => {
  assert.equal(responseId('{"id":"a"}'), 'a');
  assert.equal(responseId('{"id":""}'), undefined);
  assert.equal(responseId('{"id":null}'), undefined);
  assert.equal(responseId(''), undefined);
  assert.equal(responseId('nope'), undefined);
});

test('signature header: space-separated v1 entries, others ignored', () => {
  const a = base64Encode(utf8('first-signature-bytes'));
  const b = base64Encode(utf8('second'));
  const sigs = parseSignatureHeader(`v1,${a} v1a,${b}  v2,${b} v1,${b} v1,%%% junk`);
  assert.deepEqual(sigs, [utf8('first-signature-bytes'), utf8('second')]);
  assert.deepEqual(parseSignatureHeader(''), []);
  assert.deepEqual(parseSignatureHeader('v1a,abcd'), []);
});

test('incoming headers: case-insensitive, all three required', () => {
  const hs = [
    { name: 'Webhook-Id', value: 'msg_1' },
    { name: 'WEBHOOK-TIMESTAMP', value: ' 1700000000 ' },
    { name: 'webhook-signature', value: 'v1,abc=' },
  ];
  assert.deepEqual(webhookHeaders(hs), { id: 'msg_1', timestamp: '1700000000', signature: 'v1,abc=' });
  for (const missing of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
    const p = thrown(() => webhookHeaders(hs.filter((h) => h.name.toLowerCase() !== missing)));
    assert.deepEqual(p, { tag: 'malformed', val: `missing header ${missing}` });
  }
  const p = thrown(() => webhookHeaders([hs[0], { name: 'webhook-timestamp', value: '1700000000.5' }, hs[2]]));
  assert.equal(p.tag, 'malformed');
});

test('timestamps more than five minutes away are stale', () => {
  const now = 1_700_000_000_000n;
  checkTimestamp('1700000000', now);
  checkTimestamp('1699999700', now);
  checkTimestamp('1700000300', now);
  assert.deepEqual(thrown(() => checkTimestamp('1699999699', now)), { tag: 'stale-timestamp' });
  assert.deepEqual(thrown(() => checkTimestamp('1700000301', now)), { tag: 'stale-timestamp' });
});

test('the event of a verified body', () => {
  const body = utf8(
    '{"type":"contact.updated","timestamp":"2023-11-14T22:13:20.000Z","data":{"id":"c_7","property":"lifecycle","value":"customer"}}',
  );
  assert.deepEqual(parseEvent(body, 'msg_1', '1700000000'), {
    kind: 'contact.updated',
    objectId: 'c_7',
    occurredAtMs: 1_700_000_000_000n,
    propertyName: 'lifecycle',
    propertyValue: 'customer',
  });
  const bare = parseEvent(utf8('{"type":"contact.deleted","data":{}}'), 'msg_2', '5');
  assert.deepEqual(bare, {
    kind: 'contact.deleted',
    objectId: 'msg_2',
    occurredAtMs: 5000n,
    propertyName: undefined,
    propertyValue: undefined,
  });
  const typed = parseEvent(utf8('{"type":"t","data":{"id":12,"property":"score","value":3.5}}'), 'm', '1');
  assert.equal(typed.objectId, '12');
  assert.equal(typed.propertyValue, '3.5');
  assert.equal(parseEvent(utf8('{"type":"t","data":{"value":{"a":1}}}'), 'm', '1').propertyValue, '{"a":1}');
});

test('bodies that are not the envelope are malformed', () => {
  for (const bad of ['', 'not json', '[]', '{"data":{}}', '{"type":""}', 'null']) {
    assert.equal(thrown(() => parseEvent(utf8(bad), 'm', '1')).tag, 'malformed', bad);
  }
  assert.equal(thrown(() => parseEvent(new Uint8Array([0x7b, 0xff, 0x7d]), 'm', '1')).tag, 'malformed', 'invalid UTF-8');
});
