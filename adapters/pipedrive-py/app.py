"""leadgate's Pipedrive adapter, in Python (componentize-py).

Implements the `adapter` and `erasure` exports of the WIT world
`crm-adapter-with-erasure` (wit/leadgate.wit, package leadgate:plugin@0.2.1). The decisions live in
pipedrive_logic.py, which has no dependency on the generated bindings; this
module converts between its plain types and the WIT types and supplies the
host imports.

Destination configuration: `base-url` (default https://api.pipedrive.com),
`readback-percent` (0-100, default 100: the share of written persons read
back and compared with what was sent, chosen by a stable hash of the job id),
`search-settle-ms` (default 30000: how long Pipedrive's search may take to
show a new person; an earlier create that may have landed blocks a new one
for this long).
Secrets: `api-token` (sent as `x-api-token: {{secret:api-token}}`, substituted
by the host), `webhook-password` (HMAC key for the webhook Basic-auth
password; see README.md).
"""

# Modules used at run time are imported here, at the top level, so that they
# are part of the snapshot componentize-py takes when it pre-initializes the
# component (the guest has no file system to import from later).
import base64  # noqa: F401
import hashlib  # noqa: F401
import hmac  # noqa: F401
import json  # noqa: F401
import re  # noqa: F401
import urllib.parse  # noqa: F401
from typing import List

from componentize_py_types import Err

import wit_world
from wit_world.exports import adapter as wa
from wit_world.exports import erasure as we
from wit_world.imports import clock, crypto, http, kv, types
from wit_world.imports import log as wlog

import pipedrive_logic as L

_LEVELS = {
    "trace": wlog.Level.TRACE,
    "debug": wlog.Level.DEBUG,
    "info": wlog.Level.INFO,
    "warn": wlog.Level.WARN,
    "error": wlog.Level.ERROR,
}

_HTTP_ERRORS = {
    types.HttpError_HostNotAllowed: "host-not-allowed",
    types.HttpError_SecretNotGranted: "secret-not-granted",
    types.HttpError_InvalidRequest: "invalid-request",
    types.HttpError_Timeout: "timeout",
    types.HttpError_ResponseTooLarge: "response-too-large",
    types.HttpError_Transport: "transport",
}


def _log(level: str, message: str) -> None:
    try:
        wlog.log(_LEVELS.get(level, wlog.Level.INFO), message)
    except Exception:
        pass


def _now_ms() -> int:
    return clock.now_ms()


class _KvMemory(L.Memory):
    """The host's key-value import (durable, private to this destination)."""

    def get(self, key: str):
        value = kv.get(key)
        return None if value is None else bytes(value).decode("utf-8", "replace")

    def set(self, key: str, value: str, ttl_ms):
        kv.set(key, value.encode("utf-8"), ttl_ms)

    def delete(self, key: str) -> None:
        kv.delete(key)


_REQUEST_KINDS = {
    "write": types.RequestKind.WRITE,
    "read": types.RequestKind.READ,
    "search": types.RequestKind.SEARCH,
}

_RETRY_KINDS = {
    L.TRANSIENT: wa.RetryKind.TRANSIENT,
    L.HELD_BACK: wa.RetryKind.HELD_BACK,
    L.READBACK_MISMATCH: wa.RetryKind.READBACK_MISMATCH,
    L.AUTH_EXPIRED: wa.RetryKind.AUTH_EXPIRED,
}

_REJECTION_KINDS = {
    "validation": wa.RejectionKind.VALIDATION,
    "conflict": wa.RejectionKind.CONFLICT,
    "forbidden": wa.RejectionKind.FORBIDDEN,
    "config": wa.RejectionKind.CONFIG,
    "other": wa.RejectionKind.OTHER,
}


def _request_kind(req: L.Request):
    if req.kind:
        return _REQUEST_KINDS[req.kind]
    return types.RequestKind.READ if req.method in ("GET", "HEAD") else types.RequestKind.WRITE


def _send(req: L.Request) -> L.Response:
    """The host's http.send; its http-error becomes L.HttpFailure."""
    wreq = types.HttpRequest(
        method=req.method,
        url=req.url,
        headers=[types.Header(name=n, value=v) for n, v in req.headers],
        body=req.body,
        timeout_ms=req.timeout_ms,
        kind=_request_kind(req),
    )
    try:
        resp = http.send(wreq)
    except Err as e:
        err = e.value
        kind = _HTTP_ERRORS.get(type(err), "transport")
        detail = getattr(err, "value", "")
        raise L.HttpFailure(kind, "" if detail is None else str(detail))
    return L.Response(
        status=resp.status,
        headers=[(h.name, h.value) for h in resp.headers],
        body=bytes(resp.body),
    )


def _rejection(o: L.Rejected) -> wa.Rejection:
    return wa.Rejection(
        kind=_REJECTION_KINDS[L.rejection_kind(o.rule)],
        field=o.field, rule=o.rule, message=o.message,
    )


def _retry_info(o: L.Retry) -> wa.RetryInfo:
    after = None if o.after_ms is None else max(0, int(o.after_ms))
    return wa.RetryInfo(kind=_RETRY_KINDS[o.kind], after_ms=after, reason=o.reason)


def _to_wit(o) -> wa.Outcome:
    if isinstance(o, L.Created):
        return wa.Outcome_Created(o.id)
    if isinstance(o, L.Updated):
        return wa.Outcome_Updated(o.id)
    if isinstance(o, L.Rejected):
        return wa.Outcome_Rejected(_rejection(o))
    if isinstance(o, L.RateLimited):
        return wa.Outcome_RateLimited(max(0, int(o.after_ms)))
    if isinstance(o, L.Retry):
        return wa.Outcome_Retry(_retry_info(o))
    return _transient(f"adapter produced {o!r}")


def _erase_to_wit(o) -> we.EraseOutcome:
    if isinstance(o, L.Deleted):
        return we.EraseOutcome_Deleted()
    if isinstance(o, L.NotFound):
        return we.EraseOutcome_NotFound()
    if isinstance(o, L.Rejected):
        return we.EraseOutcome_Rejected(_rejection(o))
    if isinstance(o, L.RateLimited):
        return we.EraseOutcome_RateLimited(max(0, int(o.after_ms)))
    if isinstance(o, L.Retry):
        return we.EraseOutcome_Retry(_retry_info(o))
    return we.EraseOutcome_Retry(_retry_info(L.Retry(None, f"adapter produced {o!r}")))


def _transient(reason: str) -> wa.Outcome:
    return wa.Outcome_Retry(wa.RetryInfo(kind=wa.RetryKind.TRANSIENT, after_ms=None, reason=reason))


def _pusher(ctx: wa.PushContext) -> L.Pusher:
    """A Pusher for the destination's configuration, remembering in the
    host's key-value store (what a deletion forgets is there too)."""
    def config(key: str):
        return next((v for k, v in ctx.config if k == key), None)

    base = next((v for k, v in ctx.config if k == "base-url" and v.strip()), None)
    return L.Pusher(base or L.DEFAULT_BASE_URL, _send, _log, _now_ms,
                    L.parse_readback_percent(config("readback-percent")), memory=_KvMemory(),
                    settle_ms=L.parse_settle_ms(config("search-settle-ms")))


def _adapter_error(e: Exception) -> str:
    """Logs an exception an export caught (one escaping an export traps the
    instance) and returns the reason to retry with."""
    reason = f"adapter error: {type(e).__name__}: {e}"
    _log("error", reason)
    return reason


class Adapter(wit_world.exports.Adapter):
    def describe(self) -> wa.AdapterInfo:
        return wa.AdapterInfo(
            name=L.NAME,
            version=L.VERSION,
            description=L.DESCRIPTION,
            max_batch_size=L.MAX_BATCH_SIZE,
            upsert_key="email",
            # A person may be phone-only; a name is what Pipedrive requires.
            required_properties=["name"],
            supports_webhooks=True,
            config_keys=["base-url", "readback-percent", "search-settle-ms"],
            secrets=["api-token", "webhook-password"],
            default_hosts=["api.pipedrive.com"],
            rate_limits=[
                wa.RateLimit(
                    name=n, max_requests=m, window_ms=w,
                    kinds=[types.RequestKind.SEARCH] if n == "search" else [],
                )
                for n, m, w in L.RATE_LIMITS
            ],
            max_concurrent=None,
            auth=wa.AuthScheme_ApiKey("api-token"),
        )

    def push(self, batch: List[wa.Delivery], ctx: wa.PushContext) -> List[wa.DeliveryOutcome]:
        try:
            results = _pusher(ctx).push(
                [(d.id, [(p.name, p.value) for p in d.properties]) for d in batch]
            )
            return [wa.DeliveryOutcome(delivery_id=did, outcome=_to_wit(o)) for did, o in results]
        except Exception as e:
            reason = _adapter_error(e)
            return [wa.DeliveryOutcome(delivery_id=d.id, outcome=_transient(reason)) for d in batch]

    def verify_webhook(self, request: wa.WebhookRequest) -> wa.WebhookReceipt:
        # Err(...) raised here is the export's result error; anything else
        # would trap, so it is turned into malformed.
        try:
            def hmac_user(user: bytes) -> bytes:
                try:
                    return bytes(crypto.hmac_sha256(L.WEBHOOK_SECRET, user))
                except Err:
                    raise L.SecretMissing()

            L.verify_basic(
                [(h.name, h.value) for h in request.headers],
                hmac_user,
                lambda a, b: crypto.constant_time_eq(a, b),
            )
            events = L.parse_webhook(bytes(request.body), _now_ms)
        except L.WebhookBadSignature:
            raise Err(wa.WebhookError_BadSignature())
        except L.SecretMissing:
            raise Err(wa.WebhookError_Malformed(f"secret {L.WEBHOOK_SECRET} is not granted"))
        except L.WebhookMalformed as e:
            raise Err(wa.WebhookError_Malformed(str(e)))
        except Exception as e:
            raise Err(wa.WebhookError_Malformed(f"adapter error: {type(e).__name__}: {e}"))
        return wa.WebhookReceipt(events=[
            wa.CrmEvent(
                kind=ev["kind"],
                object_id=ev["object_id"],
                occurred_at_ms=ev["occurred_at_ms"],
                property_name=ev["property_name"],
                property_value=ev["property_value"],
            )
            for ev in events
        ], answer=None)


class Erasure(wit_world.exports.Erasure):
    def erase(self, batch: List[we.ErasureRequest], ctx: wa.PushContext) -> List[we.ErasureOutcome]:
        try:
            results = _pusher(ctx).erase([(r.id, r.record_id) for r in batch])
            return [we.ErasureOutcome(erasure_id=eid, outcome=_erase_to_wit(o)) for eid, o in results]
        except Exception as e:
            retry = _erase_to_wit(L.Retry(None, _adapter_error(e)))
            return [we.ErasureOutcome(erasure_id=r.id, outcome=retry) for r in batch]
