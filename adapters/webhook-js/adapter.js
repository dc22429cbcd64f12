// leadgate's generic signed-webhook destination: every delivery is POSTed to
// the destination's `url` as a Standard Webhooks v1 message
// (https://www.standardwebhooks.com), signed with HMAC-SHA256 by the host, so
// the signing key never enters the guest. `verify-webhook` checks incoming
// Standard Webhooks messages signed with the same key.
//
// Destination configuration: `url` (required). Secret: `signing-key` (the
// host accepts the Standard Webhooks form `whsec_<base64>`).
//
// Everything that needs no host import lives in ./logic.js (unit-tested with
// `node --test adapters/webhook-js/test/`).

import { send } from 'leadgate:plugin/http@0.2.0';
import { hmacSha256, constantTimeEq } from 'leadgate:plugin/crypto@0.2.0';
import { log } from 'leadgate:plugin/log@0.2.0';
import { nowMs } from 'leadgate:plugin/clock@0.2.0';

import {
  buildBody,
  buildRequest,
  checkTimestamp,
  configValue,
  importErrorPayload,
  outcomeForBug,
  outcomeForHttpError,
  outcomeForResponse,
  parseEvent,
  parseSignatureHeader,
  rejected,
  signedContent,
  unixSeconds,
  utf8,
  webhookHeaders,
  WebhookError,
  badSignature,
  malformed,
  webhookId,
} from './logic.js';

const SIGNING_KEY = 'signing-key';

function describe() {
  return {
    name: 'webhook',
    version: '0.1.0',
    description: 'Signed webhook (Standard Webhooks v1) to any HTTPS endpoint',
    // One POST per delivery; push loops over the batch.
    maxBatchSize: 50,
    upsertKey: 'idempotency-key',
    requiredProperties: [],
    supportsWebhooks: true,
    configKeys: ['url'],
    secrets: [SIGNING_KEY],
    // No default: the destination's allow-list must name the receiver's host.
    defaultHosts: [],
    rateLimits: [{ name: 'burst', maxRequests: 50, windowMs: 1000n, kinds: [] }],
    maxConcurrent: undefined,
    // The receiver authenticates messages by their signature (the
    // `signing-key` secret, used through the crypto import).
    auth: { tag: 'none' },
  };
}

/** HMAC-SHA256 with the host-held signing key; throws an outcome on failure. */
function sign(content) {
  try {
    return hmacSha256(SIGNING_KEY, content);
  } catch (e) {
    const p = importErrorPayload(e);
    if (p && p.tag === 'secret-not-granted') {
      throw { outcome: rejected('config', `secret ${p.val} is not granted to the destination`) };
    }
    throw e;
  }
}

function deliverOne(delivery, url) {
  const now = nowMs();
  const id = webhookId(delivery);
  const timestamp = unixSeconds(now);
  const body = utf8(buildBody(delivery, now));
  const mac = sign(signedContent(id, timestamp, body));
  let response;
  try {
    response = send(buildRequest(url, id, timestamp, body, mac));
  } catch (e) {
    return outcomeForHttpError(e);
  }
  return outcomeForResponse(response, id);
}

function push(batch, ctx) {
  const url = configValue(ctx.config, 'url');
  const out = [];
  for (const delivery of batch) {
    let outcome;
    try {
      outcome = url
        ? deliverOne(delivery, url)
        : rejected('config', `destination ${ctx.destination} sets no url`, 'url');
    } catch (e) {
      if (e && typeof e === 'object' && e.outcome) {
        outcome = e.outcome;
      } else {
        outcome = outcomeForBug(e);
        try {
          log('error', `webhook: delivery ${delivery.id}: ${outcome.val.reason}`);
        } catch {
          // Logging must not turn one failed delivery into a trap.
        }
      }
    }
    out.push({ deliveryId: delivery.id, outcome });
  }
  return out;
}

/** Returns a `webhook-receipt`; throws a `webhook-error` variant (the `err` case). */
function verifyWebhook(request) {
  try {
    const { id, timestamp, signature } = webhookHeaders(request.headers);
    checkTimestamp(timestamp, nowMs());
    const candidates = parseSignatureHeader(signature);
    if (candidates.length === 0) throw badSignature();
    let expected;
    try {
      expected = hmacSha256(SIGNING_KEY, signedContent(id, timestamp, request.body));
    } catch (e) {
      const p = importErrorPayload(e);
      throw malformed(`cannot verify: ${p && p.tag === 'secret-not-granted' ? `secret ${p.val} is not granted` : String(e)}`);
    }
    let ok = false;
    for (const candidate of candidates) {
      // Check every entry, so the time taken does not tell which one matched.
      if (constantTimeEq(candidate, expected)) ok = true;
    }
    if (!ok) throw badSignature();
    return { events: [parseEvent(request.body, id, timestamp)], answer: undefined };
  } catch (e) {
    if (e instanceof WebhookError) throw e.payload;
    throw { tag: 'malformed', val: `adapter error: ${e && e.message ? e.message : String(e)}` };
  }
}

export const adapter = { describe, push, verifyWebhook };
