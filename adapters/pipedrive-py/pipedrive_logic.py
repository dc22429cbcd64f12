"""Pipedrive adapter logic, free of the generated WIT bindings.

Everything that decides *what* to send and *what an answer means* lives here,
so it runs under plain CPython (see test_logic.py). `app.py` is the thin layer
that converts between these plain types and the componentize-py bindings and
supplies the host imports (http send, crypto, clock, log).

Pipedrive API v2 persons have no native upsert: each delivery is a search
(by email, else by phone) followed by PATCH of the match or POST of a new
person.

Pipedrive's search index lags writes by seconds, so "search, then create"
alone makes a second person whenever a person is delivered again soon
after it was created (a merge update, or a retry after a crash). The
adapter therefore remembers, in the host's durable key-value store
(`Memory`), each person it created (search key -> id, for
`REMEMBER_MS`), and writes a create *intent* before each POST. A later
delivery of a remembered person reads it by id (no search); a delivery
that finds an intent younger than `search-settle-ms` and no person waits
until the search can be trusted instead of creating: the earlier attempt
(killed, or timed out) may have created the person already.

Read-back: after Pipedrive reports a person created or updated, the person
is read back (`GET /api/v2/persons/{id}`) for a configurable share of the
deliveries and compared with what was sent. A "success" that stored
nothing, or not what was sent, becomes a read-back-mismatch retry (the host
counts those) instead of a delivery.
"""

import base64
import hashlib
import hmac
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

NAME = "pipedrive"
VERSION = "0.3.0"
DESCRIPTION = (
    "Pipedrive persons (API v2): searched by email, else phone, "
    "then updated or created"
)
DEFAULT_BASE_URL = "https://api.pipedrive.com"
MAX_BATCH_SIZE = 20
REQUEST_TIMEOUT_MS = 30_000
# When Pipedrive throttles without saying for how long: its burst window.
DEFAULT_THROTTLE_MS = 2_000
TOKEN_HEADER_VALUE = "{{secret:api-token}}"
WEBHOOK_SECRET = "webhook-password"

# (name, max-requests, window-ms)
RATE_LIMITS = [
    ("burst", 80, 2_000),  # Professional plan, api_token, per 2 s
    ("search", 10, 2_000),  # search API, every plan
    ("daily", 10_000, 86_400_000),  # POST/PUT fair-use cap per user
]

# How long the search index may lag a write (destination config
# `search-settle-ms`): a create intent younger than this blocks a create.
DEFAULT_SETTLE_MS = 30_000
# How long a created person is remembered by its search key: far longer
# than the index lag, short enough that the host's key-value limit (10,000
# keys per destination) holds the creates of this window.
REMEMBER_MS = 10 * 60_000

# Retry kinds (`retry-kind` in the WIT).
TRANSIENT = "transient"
HELD_BACK = "held-back"
READBACK_MISMATCH = "readback-mismatch"
AUTH_EXPIRED = "auth-expired"

# The rule of a refusal -> its kind (`rejection-kind` in the WIT): leadgate's
# one taxonomy across CRMs.
_REJECTION_KINDS = {
    "required": "validation",
    "validation": "validation",
    "forbidden": "forbidden",
    "config": "config",
    # The person was deleted or merged away in Pipedrive.
    "not_found": "conflict",
}


def rejection_kind(rule: str) -> str:
    return _REJECTION_KINDS.get(rule, "other")

KNOWN_PROPERTIES = ("name", "first_name", "last_name", "email", "phone", "job_title")
IGNORED_PROPERTIES = ("org_name",)
_HASH_RE = re.compile(r"^[0-9a-fA-F]{40}$")


# --------------------------------------------------------------------------
# Plain types shared with app.py
# --------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    url: str
    headers: List[Tuple[str, str]]
    body: bytes = b""
    timeout_ms: Optional[int] = REQUEST_TIMEOUT_MS
    # "write", "read" or "search" (`request-kind` in the WIT): what the
    # host's quota windows count it as; empty: read for GET, else write.
    kind: str = ""


@dataclass
class Response:
    status: int
    headers: List[Tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> Optional[str]:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None


class HttpFailure(Exception):
    """The host's http-error variant: kind is the WIT case name
    ("host-not-allowed", "secret-not-granted", "invalid-request", "timeout",
    "response-too-large", "transport")."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


@dataclass
class Created:
    id: str


@dataclass
class Updated:
    id: str


@dataclass
class Rejected:
    field: Optional[str]
    rule: str
    message: str


@dataclass
class Retry:
    after_ms: Optional[int]
    reason: str
    kind: str = TRANSIENT


@dataclass
class RateLimited:
    after_ms: int


@dataclass
class Deleted:
    id: str


@dataclass
class NotFound:
    id: str


Send = Callable[[Request], Response]
Log = Callable[[str, str], None]


def _no_log(level: str, message: str) -> None:
    pass


# --------------------------------------------------------------------------
# Building the person
# --------------------------------------------------------------------------


@dataclass
class Person:
    body: Dict[str, object]
    email: Optional[str]
    phone: Optional[str]
    # Property names this delivery carried, for guessing the field of a 400.
    property_names: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)


def property_map(properties: List[Tuple[str, str]]) -> Dict[str, str]:
    """Last non-empty (trimmed) value wins for each name."""
    out: Dict[str, str] = {}
    for name, value in properties:
        v = (value or "").strip()
        if v:
            out[name.strip()] = v
    return out


def build_person(properties: List[Tuple[str, str]]):
    """Returns a Person, or a Rejected outcome when no name can be made."""
    props = property_map(properties)
    first = props.get("first_name")
    last = props.get("last_name")
    name = props.get("name") or " ".join(p for p in (first, last) if p).strip()
    if not name:
        return Rejected(
            "name",
            "required",
            "Pipedrive persons need a name (or first_name/last_name)",
        )
    body: Dict[str, object] = {"name": name}
    if first:
        body["first_name"] = first
    if last:
        body["last_name"] = last
    email = props.get("email")
    phone = props.get("phone")
    if email:
        body["emails"] = [{"value": email, "primary": True, "label": "work"}]
    if phone:
        body["phones"] = [{"value": phone, "primary": True, "label": "work"}]
    if props.get("job_title"):
        body["job_title"] = props["job_title"]
    custom = {k: v for k, v in props.items() if _HASH_RE.match(k)}
    if custom:
        body["custom_fields"] = custom
    ignored = sorted(
        k for k in props if k not in KNOWN_PROPERTIES and not _HASH_RE.match(k)
    )
    return Person(body, email, phone, sorted(props), ignored)


# --------------------------------------------------------------------------
# Reading Pipedrive's answers
# --------------------------------------------------------------------------


def error_text(resp: Response) -> str:
    """Pipedrive's `error` text, else the start of the body."""
    doc = resp.json()
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, str) and err:
            return err
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        msg = doc.get("message")
        if isinstance(msg, str) and msg:
            return msg
    text = resp.body[:500].decode("utf-8", "replace").strip()
    return text or f"HTTP {resp.status}"


_FIELD_ALIASES = [
    # (pattern in the message, our property name); most specific first.
    ("first_name", "first_name"),
    ("first name", "first_name"),
    ("last_name", "last_name"),
    ("last name", "last_name"),
    ("job_title", "job_title"),
    ("job title", "job_title"),
    ("emails", "email"),
    ("email", "email"),
    ("phones", "phone"),
    ("phone", "phone"),
    ("name", "name"),
]


def guess_field(message: str, property_names: List[str]) -> Optional[str]:
    """The property a validation message talks about, if it names one of ours."""
    text = message.lower()
    for name in property_names:
        if _HASH_RE.match(name) and name.lower() in text:
            return name
    for pattern, prop in _FIELD_ALIASES:
        if re.search(r"(?<![a-z0-9_])" + re.escape(pattern) + r"(?![a-z0-9_])", text):
            return prop
    return None


def throttle_ms(resp: Response, now_ms: Optional[int] = None) -> int:
    """Delay from Retry-After (s), else x-ratelimit-reset (s), else 2000."""
    for name in ("retry-after", "x-ratelimit-reset"):
        raw = resp.header(name)
        if raw is None:
            continue
        try:
            secs = float(raw.strip())
        except ValueError:
            continue
        if secs < 0:
            continue
        if secs > 1e9:
            # An epoch timestamp rather than a number of seconds.
            if now_ms is None:
                continue
            return max(0, int(secs * 1000) - now_ms)
        return int(secs * 1000)
    return DEFAULT_THROTTLE_MS


def classify_error(resp: Response, what: str, person: Optional[Person], now_ms=None):
    """Outcome for a non-2xx answer (404 on PATCH is handled by the caller)."""
    s = resp.status
    if s == 401:
        return Retry(None, "unauthorized: token rejected", AUTH_EXPIRED)
    if s == 429:
        return RateLimited(throttle_ms(resp, now_ms))
    msg = error_text(resp)
    if s >= 500 or s in (408, 409, 423, 425):
        after = None
        ra = resp.header("retry-after")
        if ra is not None:
            try:
                after = int(float(ra.strip()) * 1000)
            except ValueError:
                after = None
        return Retry(after, f"Pipedrive answered {s} to {what}: {msg}")
    if s in (400, 422):
        names = person.property_names if person is not None else []
        return Rejected(guess_field(msg, names), "validation", msg)
    if s == 403:
        return Rejected(None, "forbidden", f"Pipedrive refused {what}: {msg}")
    if s == 404:
        return Rejected(None, "not_found", f"Pipedrive answered 404 to {what}: {msg}")
    return Rejected(None, "unexpected_status", f"Pipedrive answered {s} to {what}: {msg}")


def http_failure_outcome(e: HttpFailure, what: str):
    if e.kind == "host-not-allowed":
        return Rejected(None, "config", f"{what}: host {e.detail} is not in the allow-list")
    if e.kind == "secret-not-granted":
        return Rejected(None, "config", f"{what}: secret {e.detail} is not granted")
    if e.kind == "invalid-request":
        return Rejected(None, "config", f"{what}: invalid request: {e.detail}")
    if e.kind == "timeout":
        return Retry(None, f"Pipedrive did not answer {what} in time")
    if e.kind == "response-too-large":
        return Retry(None, f"Pipedrive's answer to {what} exceeded {e.detail} bytes")
    return Retry(None, f"Pipedrive unreachable for {what}: {e.detail or e.kind}")


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


def _entry_key(list_name: str, value: str) -> str:
    """How two entries of a person's `emails` or `phones` list are compared:
    emails without case or surrounding space, phones by their digits."""
    if list_name == "phones":
        return _digits(value) or value
    return value.strip().lower()


def _values(v) -> List[str]:
    """Pipedrive lists emails/phones as strings (search) or {value} objects."""
    out = []
    if isinstance(v, str):
        return [v]
    if isinstance(v, list):
        for x in v:
            if isinstance(x, str):
                out.append(x)
            elif isinstance(x, dict) and isinstance(x.get("value"), str):
                out.append(x["value"])
    return out


def merged_update_body(body: dict, found: Optional[dict]) -> dict:
    """The PATCH body for a person the search found. Pipedrive v2 replaces
    a person's whole `emails`/`phones` list when one is given, so: leave a
    list out when the person has every value already, else send what the
    person has plus the new values (the person's primary stays primary)."""
    if not found:
        return body
    out = dict(body)
    for key in ("emails", "phones"):
        new = out.get(key)
        if not new:
            continue
        have = _values(found.get(key))
        known = {_entry_key(key, h) for h in have}
        added = [e for e in new if _entry_key(key, e.get("value", "")) not in known]
        if not added:
            del out[key]
            continue
        merged = [{"value": h, "primary": i == 0, "label": "work"} for i, h in enumerate(have)]
        for e in added:
            merged.append(dict(e, primary=not merged))
        out[key] = merged
    return out


def pick_match(doc, by: str, term: str) -> Optional[str]:
    """The id of the first search hit that really matches, as a string."""
    item = pick_item(doc, by, term)
    return None if item is None else str(item["id"])


def pick_item(doc, by: str, term: str) -> Optional[dict]:
    """The first search hit that really matches."""
    if not isinstance(doc, dict):
        return None
    data = doc.get("data")
    items = data.get("items") if isinstance(data, dict) else data
    if not isinstance(items, list):
        return None
    for entry in items:
        item = entry.get("item", entry) if isinstance(entry, dict) else None
        if not isinstance(item, dict) or item.get("id") is None:
            continue
        if item.get("type") not in (None, "person"):
            continue
        key = "emails" if by == "email" else "phones"
        have = _values(item.get(key))
        if have:
            if by == "email":
                if term.lower() not in (h.strip().lower() for h in have):
                    continue
            else:
                if _digits(term) not in (_digits(h) for h in have):
                    continue
        return item
    return None


def created_id(resp: Response) -> Optional[str]:
    doc = resp.json()
    if isinstance(doc, dict) and isinstance(doc.get("data"), dict):
        pid = doc["data"].get("id")
        if pid is not None and not isinstance(pid, bool):
            return str(pid)
    return None


# --------------------------------------------------------------------------
# Push
# --------------------------------------------------------------------------


def stable_percent(delivery_id: str) -> int:
    """0-99 from a delivery id, the same every time (FNV-1a, as the HubSpot
    adapter samples)."""
    h = 0xCBF29CE484222325
    for b in delivery_id.encode():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h % 100


def parse_readback_percent(raw: Optional[str]) -> int:
    """The `readback-percent` setting: 0-100, default 100."""
    try:
        return max(0, min(100, int((raw or "").strip())))
    except ValueError:
        return 100


def readback_differences(sent: dict, held: dict) -> List[str]:
    """The fields of the sent person body that the stored person does not
    hold. Emails and phones need only be in the person's lists (a person may
    have more); fields the answer leaves out are not compared."""
    out = []
    for key in ("name", "first_name", "last_name", "job_title"):
        if key in sent and key in held:
            have = held.get(key)
            if not isinstance(have, str) or have.strip() != str(sent[key]).strip():
                out.append(key)
    for key in ("emails", "phones"):
        have = {_entry_key(key, v) for v in _values(held.get(key))}
        for entry in sent.get(key) or []:
            if _entry_key(key, entry.get("value", "")) not in have:
                out.append(key)
                break
    custom = held.get("custom_fields")
    if isinstance(custom, dict):
        for k, v in (sent.get("custom_fields") or {}).items():
            if k in custom and not _same_value(value_text(custom[k]), v):
                out.append(k)
    return out


def _same_value(held: Optional[str], sent: str) -> bool:
    """Equal text, or equal numbers (a numeric field may answer 5 for "5.0")."""
    if held is None:
        return False
    if held.strip() == sent.strip():
        return True
    try:
        return float(held) == float(sent)
    except ValueError:
        return False


class Memory:
    """What the adapter remembers across calls: the host's key-value import
    (durable: it survives restarts and kill -9). Values are text."""

    def get(self, key: str) -> Optional[str]:
        raise NotImplementedError

    def set(self, key: str, value: str, ttl_ms: Optional[int]) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError


class DictMemory(Memory):
    """An in-process Memory (tests, and plain CPython runs)."""

    def __init__(self, now_ms: Callable[[], int] = lambda: 0):
        self.now_ms = now_ms
        self.entries: Dict[str, Tuple[str, Optional[int]]] = {}

    def get(self, key: str) -> Optional[str]:
        entry = self.entries.get(key)
        if entry is None or (entry[1] is not None and entry[1] <= self.now_ms()):
            return None
        return entry[0]

    def set(self, key: str, value: str, ttl_ms: Optional[int]) -> None:
        self.entries[key] = (value, None if ttl_ms is None else self.now_ms() + ttl_ms)

    def delete(self, key: str) -> None:
        self.entries.pop(key, None)


def parse_settle_ms(raw: Optional[str]) -> int:
    """`search-settle-ms`: a whole number of ms ≥ 0, else the default."""
    try:
        return max(0, int(str(raw).strip()))
    except (TypeError, ValueError):
        return DEFAULT_SETTLE_MS


def _memory_key(kind: str, key: Tuple[str, str]) -> str:
    return f"{kind}:{key[0]}:{key[1]}"


def _record_key(pid: str) -> str:
    return f"record:{pid}"


def _key_list(raw: Optional[str]) -> List[str]:
    """A `record:<pid>` entry's keys (nothing readable: none)."""
    try:
        keys = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


# Transport failures after which the request may have reached Pipedrive.
_MAYBE_SENT = ("timeout", "transport", "response-too-large")


class Pusher:
    """Delivers one batch. `send` raises HttpFailure for the host's http-error."""

    def __init__(self, base_url: str, send: Send, log: Log = _no_log,
                 now_ms: Callable[[], int] = lambda: 0, readback_percent: int = 0,
                 memory: Optional[Memory] = None, settle_ms: int = DEFAULT_SETTLE_MS):
        self.base = (base_url or DEFAULT_BASE_URL).strip().rstrip("/") or DEFAULT_BASE_URL
        self.send = send
        self.log = log
        self.now_ms = now_ms
        # The share of written persons read back (by a stable hash of the
        # delivery id); 0 reads none.
        self.readback_percent = readback_percent
        # Set when Pipedrive throttled a read-back: the rest of the batch waits.
        self.throttled_ms: Optional[int] = None
        # Persons created or updated earlier in this batch, by search key, so
        # that a second delivery for the same person does not race the
        # search index and create a duplicate.
        self.seen: Dict[Tuple[str, str], str] = {}
        # Search hits by person id: what the person has already.
        self.found: Dict[str, dict] = {}
        self.memory = memory if memory is not None else DictMemory(now_ms)
        self.settle_ms = settle_ms

    def _headers(self, with_body: bool) -> List[Tuple[str, str]]:
        h = [("x-api-token", TOKEN_HEADER_VALUE), ("accept", "application/json")]
        if with_body:
            h.append(("content-type", "application/json"))
        return h

    def _call(self, method: str, path: str, body=None, kind: str = "") -> Response:
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        req = Request(method, self.base + path, self._headers(body is not None), data, kind=kind)
        return self.send(req)

    def _key(self, person: Person) -> Optional[Tuple[str, str]]:
        if person.email:
            return ("email", person.email.lower())
        if person.phone:
            return ("phone", _digits(person.phone) or person.phone)
        return None

    def search(self, person: Person):
        """Returns (id or None, None) or (None, outcome) on failure."""
        if person.email:
            by, term = "email", person.email
        elif person.phone:
            by, term = "phone", person.phone
        else:
            return None, None
        q = urllib.parse.urlencode({"term": term, "fields": by, "exact_match": "true"})
        what = f"the {by} search"
        try:
            resp = self._call("GET", "/api/v2/persons/search?" + q, kind="search")
        except HttpFailure as e:
            return None, http_failure_outcome(e, what)
        if resp.status == 200:
            item = pick_item(resp.json(), by, term)
            if item is None:
                return None, None
            pid = str(item["id"])
            self.found[pid] = item
            return pid, None
        return None, classify_error(resp, what, person, self.now_ms())

    def find(self, person: Person):
        """The person's Pipedrive id: made earlier in this batch, remembered
        from an earlier call (read by id: the search may not show it yet),
        or searched. Returns (id or None, None) or (None, outcome)."""
        key = self._key(person)
        if key is None:
            return None, None
        if key in self.seen:
            return self.seen[key], None
        remembered = self.memory.get(_memory_key("person", key))
        if remembered:
            item, failed = self.read(remembered)
            if failed is not None:
                return None, failed
            if item is not None:
                self.found[remembered] = item
                return remembered, None
            self.log("info", f"remembered person {remembered} is gone; searching")
            self.memory.delete(_memory_key("person", key))
        return self.search(person)

    def read(self, pid: str, what: str = ""):
        """`GET /api/v2/persons/{pid}`: (the person, None), (None, None) when
        it does not exist, or (None, outcome) on failure."""
        what = what or f"the read of person {pid}"
        try:
            resp = self._call("GET", "/api/v2/persons/" + urllib.parse.quote(pid, safe=""))
        except HttpFailure as e:
            return None, http_failure_outcome(e, what)
        if resp.status == 404:
            return None, None
        if resp.status == 200:
            doc = resp.json()
            held = doc.get("data") if isinstance(doc, dict) else None
            if isinstance(held, dict):
                return held, None
            return None, Retry(None, f"Pipedrive answered {what} with no person")
        return None, classify_error(resp, what, Person(body={}, email=None, phone=None),
                                    self.now_ms())

    def unsettled_create(self, person: Person):
        """A Retry while an earlier create of this person may still be
        missing from the search index, else None."""
        key = self._key(person)
        raw = self.memory.get(_memory_key("creating", key)) if key else None
        if raw is None:
            return None
        try:
            wait = int(raw) + self.settle_ms - self.now_ms()
        except ValueError:
            return None
        if wait <= 0:
            return None
        return Retry(wait, "an earlier attempt may have created this person and Pipedrive's "
                           f"search does not show writes at once; searching again in {wait} ms")

    def create(self, person: Person):
        what = "the person creation"
        key = self._key(person)
        intent = _memory_key("creating", key) if key else None
        if intent:
            # Durable before the POST: if this host dies before it learns
            # the answer, the next attempt knows a create may have happened.
            self.memory.set(intent, str(self.now_ms()), max(self.settle_ms, 1))
        try:
            resp = self._call("POST", "/api/v2/persons", person.body)
        except HttpFailure as e:
            if intent and e.kind not in _MAYBE_SENT:
                self.memory.delete(intent)
            return http_failure_outcome(e, what)
        if resp.status in (200, 201):
            pid = created_id(resp)
            if pid is None:
                return Retry(None, "Pipedrive accepted the person but sent no id")
            if key:
                self.remember(key, pid)
                self.memory.delete(intent)
            return Created(pid)
        if intent and resp.status < 500:
            self.memory.delete(intent)  # refused: nothing was made
        return classify_error(resp, what, person, self.now_ms())

    def update(self, pid: str, person: Person):
        what = f"the update of person {pid}"
        try:
            resp = self._call("PATCH", "/api/v2/persons/" + urllib.parse.quote(pid, safe=""),
                              merged_update_body(person.body, self.found.get(pid)))
        except HttpFailure as e:
            return http_failure_outcome(e, what)
        if resp.status in (200, 201):
            return Updated(created_id(resp) or pid)
        if resp.status == 404:
            self.log("info", f"person {pid} vanished before the update; creating it anew")
            return self.create(person)
        return classify_error(resp, what, person, self.now_ms())

    def read_back(self, pid: str, person: Person):
        """None when the person holds what was sent (or the read could not
        tell); else the Retry that replaces the write's outcome."""
        what = f"the read-back of person {pid}"
        held, failed = self.read(pid, what)
        if isinstance(failed, RateLimited):
            self.throttled_ms = failed.after_ms
            self.log("warn", f"read-back skipped: Pipedrive throttled {what}")
            return None
        if failed is not None:
            self.log("warn", f"read-back skipped: {failed}")
            return None
        if held is None:
            return Retry(None, f"Pipedrive reported person {pid} written, "
                               "but it does not exist (a silent no-op)", READBACK_MISMATCH)
        differ = readback_differences(person.body, held)
        if not differ:
            return None
        return Retry(None, f"person {pid} does not hold what was sent "
                           f"({', '.join(differ)}); Pipedrive reported success", READBACK_MISMATCH)

    def deliver(self, properties: List[Tuple[str, str]], delivery_id: str = ""):
        person = build_person(properties)
        if not isinstance(person, Person):
            return person
        if person.ignored:
            self.log("debug", "ignored properties: " + ", ".join(person.ignored))
        pid, failed = self.find(person)
        if failed is not None:
            return failed
        if pid is not None:
            outcome = self.update(pid, person)
        else:
            outcome = self.unsettled_create(person) or self.create(person)
        if (isinstance(outcome, (Created, Updated))
                and stable_percent(delivery_id) < self.readback_percent):
            outcome = self.read_back(outcome.id, person) or outcome
        key = self._key(person)
        if key is not None and isinstance(outcome, (Created, Updated)):
            if self.seen.get(key) != outcome.id and isinstance(outcome, Updated):
                self.remember(key, outcome.id)
            self.seen[key] = outcome.id
        return outcome

    def remember(self, key: Tuple[str, str], pid: str) -> None:
        """Remembers that `key` (an email or phone) is person `pid`, and,
        under `record:<pid>`, which keys name it: an erasure of the person
        forgets them all (the keys hold its email or phone)."""
        entry = _memory_key("person", key)
        self.memory.set(entry, pid, REMEMBER_MS)
        keys = _key_list(self.memory.get(_record_key(pid)))
        if entry not in keys:
            keys.append(entry)
        self.memory.set(_record_key(pid), json.dumps(keys), REMEMBER_MS)

    def forget(self, pid: str) -> None:
        """Forgets everything remembered of person `pid`: its keys, and
        any create of it still settling."""
        record = _record_key(pid)
        for entry in _key_list(self.memory.get(record)):
            self.memory.delete(entry)
            if entry.startswith("person:"):
                self.memory.delete("creating:" + entry[len("person:"):])
        self.memory.delete(record)

    def erase(self, erasures: List[Tuple[str, str]]):
        """Deletes persons at Pipedrive (the right to erasure): one outcome
        per (erasure id, person id), in order: Deleted, NotFound, or a
        refusal, retry or throttle as for a delivery."""
        out = []
        for eid, pid in erasures:
            if self.throttled_ms is not None:
                out.append((eid, RateLimited(self.throttled_ms)))
                continue
            o = self.delete(pid)
            if isinstance(o, RateLimited):
                self.throttled_ms = o.after_ms
            out.append((eid, o))
        return out

    def delete(self, pid: str):
        """`DELETE /api/v2/persons/{id}`: 200 deleted, 404 or 410 not found."""
        if not pid.isdigit():
            return Rejected(None, "record_id", f"{pid!r} is not a Pipedrive person id")
        what = f"deleting person {pid}"
        try:
            resp = self._call("DELETE", f"/api/v2/persons/{pid}")
        except HttpFailure as e:
            return http_failure_outcome(e, what)
        if 200 <= resp.status < 300:
            self.forget(pid)
            return Deleted(pid)
        if resp.status in (404, 410):
            self.forget(pid)
            return NotFound(pid)
        return classify_error(resp, what, None, self.now_ms())

    def push(self, deliveries: List[Tuple[str, List[Tuple[str, str]]]]):
        """[(delivery id, properties)] → [(delivery id, outcome)], one each."""
        out = []
        throttled: Optional[int] = None
        for did, props in deliveries:
            try:
                if throttled is not None:
                    # Validation needs no call: a record that can never be
                    # sent is rejected now rather than deferred.
                    person = build_person(props)
                    outcome = person if isinstance(person, Rejected) else RateLimited(throttled)
                else:
                    outcome = self.deliver(props, did)
                    if isinstance(outcome, RateLimited):
                        throttled = outcome.after_ms
                        self.log("warn", f"Pipedrive throttled; deferring the rest of the batch by {throttled} ms")
                    elif self.throttled_ms is not None:
                        throttled = self.throttled_ms
            except Exception as e:  # one outcome per delivery, always
                outcome = Retry(None, f"adapter error: {type(e).__name__}: {e}")
            out.append((did, outcome))
        return out


# --------------------------------------------------------------------------
# Webhooks
# --------------------------------------------------------------------------


class WebhookBadSignature(Exception):
    pass


class WebhookMalformed(Exception):
    pass


class SecretMissing(Exception):
    pass


def derive_webhook_password(secret: bytes, user: str) -> str:
    """The Basic-auth password Pipedrive must send for `user`:
    lowercase hex HMAC-SHA256(secret, utf8(user)). What the host computes
    with crypto.hmac-sha256("webhook-password", user)."""
    return hmac.new(secret, user.encode("utf-8"), hashlib.sha256).hexdigest()


def verify_basic(headers: List[Tuple[str, str]],
                 hmac_user: Callable[[bytes], bytes],
                 ct_eq: Callable[[bytes, bytes], bool]) -> str:
    """Checks `Authorization: Basic b64(user:password)` where password must be
    hex(HMAC-SHA256(secret webhook-password, user)). Returns the user.
    `hmac_user` raises SecretMissing when the secret is not granted."""
    auth = None
    for k, v in headers:
        if k.lower() == "authorization":
            auth = v.strip()
            break
    if not auth:
        raise WebhookBadSignature()
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise WebhookBadSignature()
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (ValueError, TypeError):
        raise WebhookBadSignature()
    user, sep, password = decoded.partition(b":")
    if not sep:
        raise WebhookBadSignature()
    expected = hmac_user(user).hex().encode("ascii")
    if not ct_eq(expected, password.strip().lower()):
        raise WebhookBadSignature()
    return user.decode("utf-8", "replace")


_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2}|UTC)?$"
)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_iso8601_ms(s: str) -> int:
    """'2025-01-01T00:00:00.000Z' → ms since the epoch. A missing zone is UTC
    (Pipedrive's v1 '2025-01-01 00:00:00' is UTC). Raises ValueError."""
    m = _ISO_RE.match(s.strip())
    if not m:
        raise ValueError(f"not an ISO-8601 timestamp: {s!r}")
    y, mo, d, hh, mi = (int(m.group(i)) for i in range(1, 6))
    ss = int(m.group(6) or 0)
    frac = (m.group(7) or "")[:3].ljust(3, "0")
    if not (1 <= mo <= 12 and 1 <= d <= 31 and hh <= 23 and mi <= 59 and ss <= 60):
        raise ValueError(f"out-of-range field in {s!r}")
    ms = ((_days_from_civil(y, mo, d) * 24 + hh) * 60 + mi) * 60_000 + ss * 1000 + int(frac)
    zone = m.group(8)
    if zone and zone not in ("Z", "z", "UTC"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = (int(digits[:2]) * 60 + int(digits[2:])) * 60_000
        ms -= sign * offset
    if ms < 0:
        raise ValueError(f"timestamp before 1970: {s!r}")
    return ms


def timestamp_ms(v) -> int:
    """Pipedrive timestamps: ISO strings (v2) or epoch numbers (v1: seconds;
    also tolerates ms and µs)."""
    if isinstance(v, bool):
        raise ValueError("boolean timestamp")
    if isinstance(v, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", v):
        v = float(v)
    if isinstance(v, (int, float)):
        if v < 0:
            raise ValueError("negative timestamp")
        if v >= 1e14:
            return int(v // 1000)  # microseconds
        if v >= 1e11:
            return int(v)  # milliseconds
        return int(v * 1000)  # seconds
    if isinstance(v, str):
        return parse_iso8601_ms(v)
    raise ValueError(f"unreadable timestamp: {v!r}")


def value_text(v) -> Optional[str]:
    """A CRM value as the string the crm-event carries."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        if not v:
            return None
        first = v[0]
        for x in v:  # the primary entry when marked
            if isinstance(x, dict) and x.get("primary") is True:
                first = x
                break
        return value_text(first)
    if isinstance(v, dict):
        if "value" in v:
            return value_text(v["value"])
        return json.dumps(v, separators=(",", ":"), sort_keys=True)
    return str(v)


_V1_ACTIONS = {"added": "create", "updated": "change", "deleted": "delete", "merged": "merge"}
_SKIP_KEYS = ("update_time",)


def _changed_v2(previous, data):
    """First key of `previous` other than update_time, with its new value."""
    if not isinstance(previous, dict):
        return None, None
    data = data if isinstance(data, dict) else {}
    for k, old in previous.items():
        if k in _SKIP_KEYS:
            continue
        if k == "custom_fields" and isinstance(old, dict) and old:
            new_cf = data.get("custom_fields")
            new_cf = new_cf if isinstance(new_cf, dict) else {}
            h = next(iter(old))
            return h, value_text(new_cf.get(h))
        return k, value_text(data.get(k))
    return None, None


def _changed_v1(previous, current):
    """v1 sends whole objects: the first key whose value differs."""
    if not isinstance(previous, dict) or not isinstance(current, dict):
        return _changed_v2(previous, current)
    for k, new in current.items():
        if k in _SKIP_KEYS or k.endswith("_time"):  # add_time, update_time, …
            continue
        if previous.get(k) != new:
            return k, value_text(new)
    for k in previous:
        if k not in current and k not in _SKIP_KEYS:
            return k, None
    return None, None


def _object_id(v) -> Optional[str]:
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    s = str(v).strip()
    return s or None


def _event_object_id(meta_id, data, previous) -> Optional[str]:
    """The event's object id: from meta, else from the record itself."""
    oid = _object_id(meta_id)
    if oid is not None:
        return oid
    for src in (data, previous):
        if isinstance(src, dict) and _object_id(src.get("id")):
            return _object_id(src.get("id"))
    return None


def parse_webhook(body: bytes, now_ms: Callable[[], int] = lambda: 0) -> List[dict]:
    """A Pipedrive v2 (or v1) webhook body → [crm-event as a dict]."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise WebhookMalformed(f"not JSON: {e}")
    if not isinstance(doc, dict) or not isinstance(doc.get("meta"), dict):
        raise WebhookMalformed("no meta object")
    meta = doc["meta"]
    if "entity" in meta or "data" in doc:  # v2
        entity = meta.get("entity")
        action = meta.get("action")
        data = doc.get("data")
        previous = doc.get("previous")
        oid = _event_object_id(meta.get("entity_id"), data, previous)
        changed = _changed_v2
    else:  # v1
        entity = meta.get("object")
        raw_action = meta.get("action")
        if (not entity or not raw_action) and isinstance(doc.get("event"), str):
            # "added.person"
            a, _, o = doc["event"].partition(".")
            raw_action, entity = raw_action or a, entity or o
        action = _V1_ACTIONS.get(raw_action, raw_action)
        data = doc.get("current")
        previous = doc.get("previous")
        oid = _event_object_id(meta.get("id"), data, previous)
        changed = _changed_v1
    if not isinstance(entity, str) or not entity:
        raise WebhookMalformed("meta has no entity")
    if not isinstance(action, str) or not action:
        raise WebhookMalformed("meta has no action")
    if oid is None:
        raise WebhookMalformed("no object id")
    ts = meta.get("timestamp")
    if ts is None or ts == "":
        occurred = now_ms()
    else:
        try:
            occurred = timestamp_ms(ts)
        except ValueError as e:
            raise WebhookMalformed(f"meta.timestamp: {e}")
    prop_name, prop_value = (None, None)
    if action == "change":
        prop_name, prop_value = changed(previous, data)
    return [{
        "kind": f"{entity}.{action}",
        "object_id": oid,
        "occurred_at_ms": occurred,
        "property_name": prop_name,
        "property_value": prop_value,
    }]


def _main(argv: List[str]) -> int:
    """`python3 pipedrive_logic.py derive-webhook-password USER` with the
    webhook-password secret on stdin: prints the password to configure in
    Pipedrive's webhook (http_auth_password) for http_auth_user USER."""
    import sys

    if len(argv) != 3 or argv[1] != "derive-webhook-password":
        print(f"usage: {argv[0]} derive-webhook-password USER  (secret on stdin)",
              file=sys.stderr)
        return 2
    secret = sys.stdin.buffer.read().rstrip(b"\r\n")
    if not secret:
        print("error: empty secret on stdin", file=sys.stderr)
        return 1
    print(derive_webhook_password(secret, argv[2]))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv))
