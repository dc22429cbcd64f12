"""Unit tests of the Pipedrive adapter's logic under plain CPython.

Run from this folder: python3 -m unittest
(no componentize-py, no bindings: pipedrive_logic.py does not import them)
"""

import base64
import hashlib
import hmac as std_hmac
import json
import unittest
import urllib.parse

import pipedrive_logic as L

HASH = "dcf558aac1ae4e8c4f849ba5e668430d8df9be12"


def resp(status, doc=None, headers=(), raw=None):
    body = raw if raw is not None else (b"" if doc is None else json.dumps(doc).encode())
    return L.Response(status, list(headers), body)


class FakeHost:
    """Records requests; `handler(req)` answers them."""

    def __init__(self, handler):
        self.handler = handler
        self.requests = []

    def __call__(self, req):
        self.requests.append(req)
        return self.handler(req)


def search_hit(pid, email=None, phone=None):
    item = {"id": pid, "type": "person", "name": "Jane Doe",
            "emails": [email] if email else [], "phones": [phone] if phone else []}
    return resp(200, {"success": True, "data": {"items": [{"result_score": 1.0, "item": item}]},
                      "additional_data": {"next_cursor": None}})


def search_miss():
    return resp(200, {"success": True, "data": {"items": []},
                      "additional_data": {"next_cursor": None}})


def props(**kw):
    return list(kw.items())


JANE = props(name="Jane Doe", email="jane@example.com")


class BuildPersonTest(unittest.TestCase):
    def test_full_body(self):
        p = L.build_person(props(first_name="Jane", last_name="Doe", email=" jane@example.com ",
                                 phone="+15551234", job_title="CTO", org_name="Acme",
                                 **{HASH: "Web form"}))
        self.assertEqual(p.body, {
            "name": "Jane Doe", "first_name": "Jane", "last_name": "Doe",
            "emails": [{"value": "jane@example.com", "primary": True, "label": "work"}],
            "phones": [{"value": "+15551234", "primary": True, "label": "work"}],
            "job_title": "CTO", "custom_fields": {HASH: "Web form"},
        })
        self.assertEqual(p.email, "jane@example.com")
        self.assertEqual(p.ignored, ["org_name"])

    def test_name_wins_over_first_last(self):
        p = L.build_person(props(name="J. Doe", first_name="Jane"))
        self.assertEqual(p.body["name"], "J. Doe")
        self.assertNotIn("emails", p.body)
        self.assertNotIn("phones", p.body)

    def test_first_name_only(self):
        self.assertEqual(L.build_person(props(first_name="Jane")).body["name"], "Jane")

    def test_missing_name_rejected(self):
        o = L.build_person(props(email="a@b.c", name="  "))
        self.assertEqual(o, L.Rejected("name", "required", o.message))

    def test_not_a_hash_is_ignored(self):
        p = L.build_person(props(name="X", **{"dcf558aac1ae4e8c4f849ba5e668430d8df9be1": "short",
                                              "zzf558aac1ae4e8c4f849ba5e668430d8df9be12": "not hex"}))
        self.assertNotIn("custom_fields", p.body)


class PushTest(unittest.TestCase):
    def run_push(self, handler, deliveries, base="http://127.0.0.1:9/"):
        host = FakeHost(handler)
        out = L.Pusher(base, host).push(deliveries)
        return host, [o for _, o in out]

    def test_search_hit_patches(self):
        def handler(req):
            if req.method == "GET":
                return search_hit(456, email="Jane@Example.com")
            return resp(200, {"success": True, "data": {"id": 456}})
        host, out = self.run_push(handler, [("d1", JANE)])
        self.assertEqual(out, [L.Updated("456")])
        get, patch = host.requests
        self.assertEqual(get.method, "GET")
        self.assertEqual(get.kind, "search", "counted by the search quota")
        u = urllib.parse.urlsplit(get.url)
        self.assertEqual((u.scheme, u.netloc, u.path), ("http", "127.0.0.1:9", "/api/v2/persons/search"))
        self.assertEqual(urllib.parse.parse_qs(u.query),
                         {"term": ["jane@example.com"], "fields": ["email"], "exact_match": ["true"]})
        self.assertIn("term=jane%40example.com", get.url)
        self.assertIn(("x-api-token", "{{secret:api-token}}"), get.headers)
        self.assertEqual(patch.method, "PATCH")
        self.assertEqual(patch.url, "http://127.0.0.1:9/api/v2/persons/456")
        self.assertIn(("content-type", "application/json"), patch.headers)
        self.assertIn(("x-api-token", "{{secret:api-token}}"), patch.headers)
        # The person has that email already: the PATCH leaves the list alone
        # (v2 would replace the person's whole list with what it is sent).
        self.assertNotIn("emails", json.loads(patch.body))

    def test_search_miss_creates(self):
        def handler(req):
            if req.method == "GET":
                return search_miss()
            self.assertEqual(req.url, "http://127.0.0.1:9/api/v2/persons")
            self.assertEqual(req.method, "POST")
            return resp(201, {"success": True, "data": {"id": 457, "name": "Jane Doe"}})
        host, out = self.run_push(handler, [("d1", JANE)])
        self.assertEqual(out, [L.Created("457")])

    def test_create_200_also_counts(self):
        host, out = self.run_push(
            lambda r: search_miss() if r.method == "GET" else resp(200, {"success": True, "data": {"id": 9}}),
            [("d1", JANE)])
        self.assertEqual(out, [L.Created("9")])

    def test_hit_with_other_email_is_not_a_match(self):
        def handler(req):
            if req.method == "GET":
                return search_hit(1, email="someone@else.com")
            return resp(201, {"success": True, "data": {"id": 2}})
        _, out = self.run_push(handler, [("d1", JANE)])
        self.assertEqual(out, [L.Created("2")])

    def test_phone_only_searches_by_phone(self):
        def handler(req):
            if req.method == "GET":
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(req.url).query)
                self.assertEqual(q["fields"], ["phone"])
                self.assertEqual(q["term"], ["+1 555 1234"])
                return search_hit(77, phone="+15551234")
            return resp(200, {"success": True, "data": {"id": 77}})
        host, out = self.run_push(handler, [("d1", props(name="Bob", phone="+1 555 1234"))])
        self.assertEqual(out, [L.Updated("77")])
        self.assertIn("%2B1+555+1234", host.requests[0].url)

    def test_no_email_no_phone_creates_directly(self):
        host, out = self.run_push(lambda r: resp(201, {"success": True, "data": {"id": 5}}),
                                  [("d1", props(name="Nobody"))])
        self.assertEqual(out, [L.Created("5")])
        self.assertEqual([r.method for r in host.requests], ["POST"])

    def test_patch_404_creates(self):
        def handler(req):
            if req.method == "GET":
                return search_hit(456, email="jane@example.com")
            if req.method == "PATCH":
                return resp(404, {"success": False, "error": "Person not found"})
            return resp(201, {"success": True, "data": {"id": 999}})
        host, out = self.run_push(handler, [("d1", JANE)])
        self.assertEqual(out, [L.Created("999")])
        self.assertEqual([r.method for r in host.requests], ["GET", "PATCH", "POST"])

    def test_401_retries(self):
        _, out = self.run_push(lambda r: resp(401, {"success": False, "error": "unauthorized access",
                                                    "errorCode": 401}), [("d1", JANE)])
        self.assertEqual(out, [L.Retry(None, "unauthorized: token rejected", L.AUTH_EXPIRED)])

    def test_429_defers_rest_of_batch(self):
        host, out = self.run_push(
            lambda r: resp(429, {"success": False, "error": "Request over limit"},
                           [("Retry-After", "3"), ("x-ratelimit-reset", "1")]),
            [("d1", JANE), ("d2", props(name="B", email="b@x.com")), ("d3", props(email="c@x.com"))])
        self.assertEqual(out[0], L.RateLimited(3000))
        self.assertEqual(out[1], L.RateLimited(3000))
        # No call needed to know this one can never be sent.
        self.assertIsInstance(out[2], L.Rejected)
        self.assertEqual(len(host.requests), 1)

    def test_429_on_create_after_successes(self):
        calls = {"n": 0}

        def handler(req):
            if req.method == "GET":
                return search_miss()
            calls["n"] += 1
            if calls["n"] == 1:
                return resp(201, {"success": True, "data": {"id": 1}})
            return resp(429, {"success": False}, [("X-RateLimit-Reset", "2")])
        _, out = self.run_push(handler, [("a", props(name="A", email="a@x")),
                                         ("b", props(name="B", email="b@x")),
                                         ("c", props(name="C", email="c@x"))])
        self.assertEqual(out, [L.Created("1"), L.RateLimited(2000), L.RateLimited(2000)])

    def test_429_without_headers(self):
        _, out = self.run_push(lambda r: resp(429, {}), [("d1", JANE)])
        self.assertEqual(out, [L.RateLimited(2000)])

    def test_5xx_retries(self):
        _, out = self.run_push(lambda r: resp(503, raw=b"<html>down</html>"), [("d1", JANE)])
        self.assertIsInstance(out[0], L.Retry)
        self.assertIn("503", out[0].reason)

    def test_400_guesses_field(self):
        def handler(req):
            if req.method == "GET":
                return search_miss()
            return resp(400, {"success": False, "error": "Invalid email address",
                              "error_info": "Please check developers.pipedrive.com"})
        _, out = self.run_push(handler, [("d1", JANE)])
        self.assertEqual(out, [L.Rejected("email", "validation", "Invalid email address")])

    def test_400_without_known_field(self):
        _, out = self.run_push(lambda r: resp(400, {"success": False, "error": "org_id does not exist"}),
                               [("d1", props(name="X"))])
        self.assertEqual(out, [L.Rejected(None, "validation", "org_id does not exist")])

    def test_transport_and_config_errors(self):
        def fail(kind, detail=""):
            def handler(req):
                raise L.HttpFailure(kind, detail)
            return handler
        _, out = self.run_push(fail("transport", "connection refused"), [("d1", JANE)])
        self.assertIsInstance(out[0], L.Retry)
        self.assertIn("connection refused", out[0].reason)
        _, out = self.run_push(fail("timeout"), [("d1", JANE)])
        self.assertIsInstance(out[0], L.Retry)
        for kind in ("host-not-allowed", "secret-not-granted", "invalid-request"):
            _, out = self.run_push(fail(kind, "x"), [("d1", JANE)])
            self.assertIsInstance(out[0], L.Rejected, kind)
            self.assertEqual(out[0].rule, "config")

    def test_exception_becomes_retry_and_batch_goes_on(self):
        def handler(req):
            if "boom" in req.url:
                raise RuntimeError("kaput")
            if req.method == "GET":
                return search_miss()
            return resp(201, {"success": True, "data": {"id": 3}})
        _, out = self.run_push(handler, [("a", props(name="A", email="boom@x")),
                                         ("b", props(name="B", email="b@x"))])
        self.assertIsInstance(out[0], L.Retry)
        self.assertIn("kaput", out[0].reason)
        self.assertEqual(out[1], L.Created("3"))

    def test_unreadable_success_is_retry(self):
        _, out = self.run_push(lambda r: resp(200, raw=b"not json"), [("d1", JANE)])
        # search answer unreadable → no match → create → no id → retry
        self.assertIsInstance(out[0], L.Retry)

    def test_same_person_twice_in_batch_updates_second(self):
        def handler(req):
            if req.method == "GET":
                return search_miss()  # the search index lags
            if req.method == "POST":
                return resp(201, {"success": True, "data": {"id": 10}})
            return resp(200, {"success": True, "data": {"id": 10}})
        host, out = self.run_push(handler, [("a", JANE), ("b", props(name="Jane", email="JANE@example.com"))])
        self.assertEqual(out, [L.Created("10"), L.Updated("10")])
        self.assertEqual([r.method for r in host.requests], ["GET", "POST", "PATCH"])

    def test_one_outcome_per_delivery_in_order(self):
        _, out = self.run_push(lambda r: resp(500, {}), [(str(i), JANE) for i in range(20)])
        self.assertEqual(len(out), 20)

    def test_default_base_url(self):
        host = FakeHost(lambda r: resp(201, {"success": True, "data": {"id": 1}}))
        L.Pusher("", host).push([("a", props(name="A"))])
        self.assertEqual(host.requests[0].url, "https://api.pipedrive.com/api/v2/persons")


class EraseTest(unittest.TestCase):
    def test_deleted_not_found_and_refused(self):
        answers = {"1": resp(200, {"success": True, "data": {"id": 1}}),
                   "2": resp(404, {"success": False, "error": "Person not found"}),
                   "3": resp(403, {"success": False, "error": "no permission"})}
        host = FakeHost(lambda req: answers[req.url.rsplit("/", 1)[1]])
        out = L.Pusher("http://127.0.0.1:9", host).erase(
            [("e1", "1"), ("e2", "2"), ("e3", "3"), ("e4", "../deals/9")])
        self.assertEqual([e for e, _ in out], ["e1", "e2", "e3", "e4"])
        self.assertEqual(out[0][1], L.Deleted("1"))
        self.assertEqual(out[1][1], L.NotFound("2"))
        self.assertIsInstance(out[2][1], L.Rejected)
        self.assertEqual(out[2][1].rule, "forbidden")
        self.assertEqual(out[3][1].rule, "record_id", "never sent: not a person id")
        self.assertEqual([r.method for r in host.requests], ["DELETE"] * 3)
        self.assertEqual(host.requests[0].url, "http://127.0.0.1:9/api/v2/persons/1")
        self.assertIn(("x-api-token", "{{secret:api-token}}"), host.requests[0].headers)

    def test_an_erased_person_leaves_nothing_in_memory(self):
        def handler(req):
            if req.method == "GET":
                return search_miss()
            if req.method == "POST":
                return resp(201, {"success": True, "data": {"id": 77}})
            if req.method == "PATCH":
                return resp(200, {"success": True, "data": {"id": 77}})
            return resp(200, {"success": True, "data": {"id": 77}})
        memory = L.DictMemory()
        pusher = L.Pusher("http://127.0.0.1:9", FakeHost(handler), memory=memory)
        out = pusher.push([("d1", JANE)])
        self.assertEqual(out, [("d1", L.Created("77"))])
        self.assertTrue(any("jane@example.com" in k for k in memory.entries), memory.entries)
        # A later call (a new pusher) deletes the person: every entry naming
        # it goes, and another person's stays.
        memory.set("person:email:other@example.com", "78", 1000)
        later = L.Pusher("http://127.0.0.1:9", FakeHost(handler), memory=memory)
        self.assertEqual(later.erase([("e1", "77")]), [("e1", L.Deleted("77"))])
        self.assertEqual(list(memory.entries), ["person:email:other@example.com"])

    def test_a_throttle_holds_the_rest_of_the_batch(self):
        host = FakeHost(lambda req: resp(429, headers=[("retry-after", "2")]))
        out = L.Pusher("http://127.0.0.1:9", host).erase([("e1", "1"), ("e2", "2")])
        self.assertEqual([o for _, o in out], [L.RateLimited(2000), L.RateLimited(2000)])
        self.assertEqual(len(host.requests), 1)


class MemoryTest(unittest.TestCase):
    """Pipedrive's search lags writes: the adapter remembers what it
    created (durably, in the host's key-value store) and never creates
    while an earlier create may still be missing from the search."""

    def setUp(self):
        self.now = 1_000_000
        self.memory = L.DictMemory(lambda: self.now)

    def push(self, handler, deliveries=None, settle_ms=30_000):
        host = FakeHost(handler)
        pusher = L.Pusher("http://127.0.0.1:9", host, now_ms=lambda: self.now,
                          memory=self.memory, settle_ms=settle_ms)
        out = pusher.push(deliveries or [("d1", JANE)])
        return host, [o for _, o in out]

    def test_a_created_person_is_read_by_id_next_time_not_searched(self):
        host, out = self.push(lambda r: search_miss() if r.method == "GET"
                              else resp(201, {"success": True, "data": {"id": 457}}))
        self.assertEqual(out, [L.Created("457")])
        self.assertIsNone(self.memory.get("creating:email:jane@example.com"), "intent cleared")
        # A later call (a merge update) while the search would still miss:
        self.now += 500

        def later(req):
            if req.url.endswith("/api/v2/persons/457") and req.method == "GET":
                return person_doc(457)
            if req.method == "PATCH":
                return resp(200, {"success": True, "data": {"id": 457}})
            self.assertNotIn("/search", req.url, "a remembered person is not searched")
            return search_miss()
        host, out = self.push(later, [("d2", props(name="Jane Doe", email="jane@example.com",
                                                   job_title="CTO"))])
        self.assertEqual(out, [L.Updated("457")])
        self.assertEqual([r.method for r in host.requests], ["GET", "PATCH"])

    def test_a_remembered_person_deleted_in_pipedrive_is_searched_again(self):
        self.memory.set("person:email:jane@example.com", "457", None)

        def handler(req):
            if req.url.endswith("/api/v2/persons/457"):
                return resp(404, {"success": False, "error": "Person not found"})
            if "/search" in req.url:
                return search_miss()
            return resp(201, {"success": True, "data": {"id": 900}})
        host, out = self.push(handler)
        self.assertEqual(out, [L.Created("900")])
        self.assertEqual(self.memory.get("person:email:jane@example.com"), "900")

    def test_an_unsettled_create_intent_waits_instead_of_creating(self):
        # A host died after writing its intent: it may have created Jane.
        self.memory.set("creating:email:jane@example.com", str(self.now - 1_000), 30_000)
        host, out = self.push(lambda r: search_miss())
        self.assertEqual(len(out), 1)
        self.assertIsInstance(out[0], L.Retry)
        self.assertEqual(out[0].after_ms, 29_000)
        self.assertEqual([r.method for r in host.requests], ["GET"], "searched, never posted")
        # Once the search can be trusted, a miss means it was never made.
        self.now += 29_000
        host, out = self.push(lambda r: search_miss() if r.method == "GET"
                              else resp(201, {"success": True, "data": {"id": 5}}))
        self.assertEqual(out, [L.Created("5")])
        # And a hit means it was: it is updated, not created again.
        self.memory.entries.clear()
        self.memory.set("creating:email:jane@example.com", str(self.now), 30_000)
        host, out = self.push(lambda r: search_hit(5, email="jane@example.com") if r.method == "GET"
                              else resp(200, {"success": True, "data": {"id": 5}}))
        self.assertEqual(out, [L.Updated("5")])

    def test_a_create_that_may_have_landed_keeps_its_intent(self):
        def timeout(req):
            if req.method == "POST":
                raise L.HttpFailure("timeout", "30 s")
            return search_miss()
        _, out = self.push(timeout)
        self.assertIsInstance(out[0], L.Retry)
        self.assertEqual(self.memory.get("creating:email:jane@example.com"), str(self.now))

        def refused(req):
            if req.method == "POST":
                return resp(400, {"success": False, "error": "Invalid email"})
            return search_miss()
        self.memory.entries.clear()
        _, out = self.push(refused)
        self.assertIsInstance(out[0], L.Rejected)
        self.assertIsNone(self.memory.get("creating:email:jane@example.com"),
                          "a refused create made nothing")

    def test_settle_ms_parses(self):
        self.assertEqual(L.parse_settle_ms("5000"), 5000)
        self.assertEqual(L.parse_settle_ms(None), L.DEFAULT_SETTLE_MS)
        self.assertEqual(L.parse_settle_ms("soon"), L.DEFAULT_SETTLE_MS)


class HelpersTest(unittest.TestCase):
    def test_rejection_kinds(self):
        self.assertEqual(L.rejection_kind("validation"), "validation")
        self.assertEqual(L.rejection_kind("required"), "validation")
        self.assertEqual(L.rejection_kind("forbidden"), "forbidden")
        self.assertEqual(L.rejection_kind("config"), "config")
        self.assertEqual(L.rejection_kind("not_found"), "conflict")
        self.assertEqual(L.rejection_kind("unexpected_status"), "other")

    def test_guess_field(self):
        self.assertEqual(L.guess_field("First name is too long", []), "first_name")
        self.assertEqual(L.guess_field("Name must be given", []), "name")
        self.assertEqual(L.guess_field("phones[0].value is invalid", []), "phone")
        self.assertEqual(L.guess_field("first_name invalid", []), "first_name")
        self.assertEqual(L.guess_field(f"Custom field {HASH} bad", [HASH, "name"]), HASH)
        self.assertIsNone(L.guess_field("owner_id is invalid", []))
        self.assertIsNone(L.guess_field("username wrong", []))

    def test_throttle(self):
        self.assertEqual(L.throttle_ms(resp(429, headers=[("retry-after", "1.5")])), 1500)
        self.assertEqual(L.throttle_ms(resp(429, headers=[("Retry-After", "soon"), ("x-ratelimit-reset", "4")])), 4000)
        self.assertEqual(L.throttle_ms(resp(429, headers=[("x-ratelimit-reset", "1700000010")]), 1700000000000), 10000)
        self.assertEqual(L.throttle_ms(resp(429)), 2000)

    def test_error_text(self):
        self.assertEqual(L.error_text(resp(400, {"success": False, "error": "Bad thing"})), "Bad thing")
        self.assertEqual(L.error_text(resp(400, raw=b"plain")), "plain")
        self.assertEqual(L.error_text(resp(400, raw=b"")), "HTTP 400")


class TimestampTest(unittest.TestCase):
    def test_iso(self):
        self.assertEqual(L.parse_iso8601_ms("1970-01-01T00:00:00Z"), 0)
        self.assertEqual(L.parse_iso8601_ms("2025-01-01T00:00:00.000Z"), 1735689600000)
        self.assertEqual(L.parse_iso8601_ms("2024-02-29T12:34:56.789Z"), 1709210096789)
        self.assertEqual(L.parse_iso8601_ms("2024-02-29T12:34:56.7891Z"), 1709210096789)
        self.assertEqual(L.parse_iso8601_ms("2025-01-01 00:00:00"), 1735689600000)
        self.assertEqual(L.parse_iso8601_ms("2025-01-01T02:00:00+02:00"), 1735689600000)
        self.assertEqual(L.parse_iso8601_ms("2000-03-01T00:00:00Z"), 951868800000)
        for bad in ("2025-13-01T00:00:00Z", "yesterday", "2025-01-01", ""):
            with self.assertRaises(ValueError):
                L.parse_iso8601_ms(bad)

    def test_against_datetime(self):
        import datetime
        t = datetime.datetime(1999, 12, 31, 23, 59, 59, 500000, tzinfo=datetime.timezone.utc)
        for i in range(0, 40000, 37):
            x = t + datetime.timedelta(days=i, seconds=i * 13)
            s = x.strftime("%Y-%m-%dT%H:%M:%S.") + f"{x.microsecond // 1000:03d}Z"
            self.assertEqual(L.parse_iso8601_ms(s), int(x.timestamp() * 1000), s)

    def test_numbers(self):
        self.assertEqual(L.timestamp_ms(1735689600), 1735689600000)
        self.assertEqual(L.timestamp_ms("1735689600"), 1735689600000)
        self.assertEqual(L.timestamp_ms(1735689600123), 1735689600123)
        self.assertEqual(L.timestamp_ms(1735689600123456), 1735689600123)


def v2_body(action="change", previous=None, data=None, **meta):
    m = {"action": action, "entity": "person", "entity_id": "456", "id": "uuid-1",
         "timestamp": "2025-01-01T00:00:00.000Z", "version": "2.0"}
    m.update(meta)
    return json.dumps({"data": data, "previous": previous, "meta": m}).encode()


class WebhookParseTest(unittest.TestCase):
    def test_v2_create(self):
        ev = L.parse_webhook(v2_body("create", None, {"id": 456, "name": "Jane"}))
        self.assertEqual(ev, [{"kind": "person.create", "object_id": "456",
                               "occurred_at_ms": 1735689600000,
                               "property_name": None, "property_value": None}])

    def test_v2_change(self):
        ev = L.parse_webhook(v2_body(
            "change", {"update_time": "2024-12-31T00:00:00Z", "emails": [{"value": "old@x", "primary": True}]},
            {"id": 456, "emails": [{"label": "home", "value": "new2@x", "primary": False},
                                   {"label": "work", "value": "new@x", "primary": True}]}))[0]
        self.assertEqual((ev["kind"], ev["property_name"], ev["property_value"]),
                         ("person.change", "emails", "new@x"))

    def test_v2_change_name_and_custom_field(self):
        ev = L.parse_webhook(v2_body("change", {"name": "Jane D."}, {"id": 456, "name": "Jane Doe"}))[0]
        self.assertEqual((ev["property_name"], ev["property_value"]), ("name", "Jane Doe"))
        ev = L.parse_webhook(v2_body("change", {"custom_fields": {HASH: None}},
                                     {"id": 456, "custom_fields": {HASH: {"type": "varchar", "value": "x"}}}))[0]
        self.assertEqual((ev["property_name"], ev["property_value"]), (HASH, "x"))

    def test_v2_delete(self):
        ev = L.parse_webhook(v2_body("delete", {"id": 456, "name": "Jane"}, None))[0]
        self.assertEqual((ev["kind"], ev["object_id"], ev["property_name"]), ("person.delete", "456", None))

    def test_v1(self):
        body = json.dumps({"v": 1, "event": "updated.person",
                           "meta": {"v": 1, "action": "updated", "object": "person", "id": 456,
                                    "timestamp": 1735689600},
                           "current": {"id": 456, "name": "Jane Doe", "update_time": "b", "org_id": {"value": 3, "name": "Acme"}},
                           "previous": {"id": 456, "name": "Jane D.", "update_time": "a", "org_id": {"value": 3, "name": "Acme"}},
                           "retry": 0}).encode()
        ev = L.parse_webhook(body)[0]
        self.assertEqual(ev, {"kind": "person.change", "object_id": "456", "occurred_at_ms": 1735689600000,
                              "property_name": "name", "property_value": "Jane Doe"})
        body = json.dumps({"meta": {"action": "added", "object": "person", "id": 7,
                                    "timestamp": "2025-01-01 00:00:00"}, "current": {"id": 7}}).encode()
        ev = L.parse_webhook(body)[0]
        self.assertEqual((ev["kind"], ev["object_id"]), ("person.create", "7"))
        body = json.dumps({"meta": {"action": "deleted", "object": "person", "id": 7, "timestamp": 1},
                           "current": None, "previous": {"id": 7}}).encode()
        self.assertEqual(L.parse_webhook(body)[0]["kind"], "person.delete")

    def test_malformed(self):
        for body in (b"{", b"[]", b'{"data":{}}', json.dumps({"meta": {"entity": "person"}}).encode(),
                     v2_body(timestamp="nope"), b"\xff"):
            with self.assertRaises(L.WebhookMalformed, msg=body):
                L.parse_webhook(body)

    def test_missing_timestamp_uses_clock(self):
        ev = L.parse_webhook(v2_body("create", None, {"id": 1}, timestamp=None), lambda: 42)[0]
        self.assertEqual(ev["occurred_at_ms"], 42)


class WebhookAuthTest(unittest.TestCase):
    SECRET = b"s3cr3t"

    def hmac_user(self, user):
        return std_hmac.new(self.SECRET, user, hashlib.sha256).digest()

    def check(self, headers):
        return L.verify_basic(headers, self.hmac_user, std_hmac.compare_digest)

    def basic(self, user, password):
        return [("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())]

    def test_good(self):
        pw = L.derive_webhook_password(self.SECRET, "pipedrive")
        self.assertEqual(len(pw), 64)
        self.assertEqual(self.check(self.basic("pipedrive", pw)), "pipedrive")
        self.assertEqual(self.check([("authorization", "basic " + base64.b64encode(
            f"pipedrive:{pw.upper()}".encode()).decode())]), "pipedrive")

    def test_bad(self):
        pw = L.derive_webhook_password(self.SECRET, "pipedrive")
        for headers in ([], self.basic("other", pw), self.basic("pipedrive", "x" * 64),
                        [("Authorization", "Bearer abc")], [("Authorization", "Basic !!!")],
                        [("Authorization", "Basic " + base64.b64encode(b"nocolon").decode())],
                        [("Authorization", "Basic")]):
            with self.assertRaises(L.WebhookBadSignature, msg=headers):
                self.check(headers)

    def test_secret_missing_propagates(self):
        def missing(user):
            raise L.SecretMissing()
        with self.assertRaises(L.SecretMissing):
            L.verify_basic(self.basic("u", "p"), missing, std_hmac.compare_digest)



class MergedUpdateTest(unittest.TestCase):
    def test_known_values_are_left_out_and_new_ones_added(self):
        body = {"name": "Jane Doe",
                "emails": [{"value": "Jane@Example.com", "primary": True, "label": "work"}],
                "phones": [{"value": "+1 415 555 0100", "primary": True, "label": "work"}]}
        found = {"id": 7, "emails": ["jane@example.com", "j.doe@corp.example"],
                 "phones": ["+14155550199"]}
        out = L.merged_update_body(body, found)
        self.assertNotIn("emails", out, "the person has that email already")
        self.assertEqual([p["value"] for p in out["phones"]], ["+14155550199", "+1 415 555 0100"])
        self.assertTrue(out["phones"][0]["primary"])
        self.assertFalse(out["phones"][1]["primary"])
        self.assertEqual(L.merged_update_body(body, None), body)


def person_doc(pid, name="Jane Doe", emails=("jane@example.com",), phones=(), **extra):
    data = {"id": pid, "name": name,
            "emails": [{"value": e, "primary": i == 0, "label": "work"} for i, e in enumerate(emails)],
            "phones": [{"value": p, "primary": i == 0, "label": "work"} for i, p in enumerate(phones)]}
    data.update(extra)
    return resp(200, {"success": True, "data": data, "additional_data": None})


class ReadBackTest(unittest.TestCase):
    """After a reported write the person is read back and compared."""

    def run_push(self, read, deliveries=(("d1", JANE),), percent=100, search=None):
        def handler(req):
            path = urllib.parse.urlsplit(req.url).path
            if req.method == "GET" and path.endswith("/search"):
                return search(req) if search else search_miss()
            if req.method == "GET":
                return read(path.rsplit("/", 1)[1])
            if req.method == "PATCH":
                return resp(200, {"success": True, "data": {"id": int(path.rsplit("/", 1)[1])}})
            return resp(201, {"success": True, "data": {"id": 457}})
        host = FakeHost(handler)
        logs = []
        pusher = L.Pusher("http://127.0.0.1:9", host, lambda lvl, msg: logs.append((lvl, msg)),
                          readback_percent=percent)
        out = pusher.push(list(deliveries))
        return host, [o for _, o in out], logs

    def test_a_person_holding_what_was_sent_stays_created(self):
        host, out, _ = self.run_push(lambda pid: person_doc(int(pid)))
        self.assertEqual(out, [L.Created("457")])
        read = host.requests[-1]
        self.assertEqual((read.method, read.url), ("GET", "http://127.0.0.1:9/api/v2/persons/457"))
        self.assertIn(("x-api-token", "{{secret:api-token}}"), read.headers)

    def test_a_missing_person_is_a_silent_no_op_and_retried(self):
        _, out, _ = self.run_push(lambda pid: resp(404, {"success": False, "error": "Person not found"}))
        self.assertIsInstance(out[0], L.Retry)
        self.assertEqual(out[0].kind, L.READBACK_MISMATCH, out[0])
        self.assertIn("person 457", out[0].reason)
        self.assertIn("silent no-op", out[0].reason)

    def test_a_person_missing_sent_values_is_retried(self):
        def search(req):
            return search_hit(456, email="jane@example.com")
        props_ = props(name="Jane Doe", email="jane@example.com", phone="+1 415 555 0100",
                       job_title="CTO")
        # The update answered success but the person kept its old phone and title.
        _, out, _ = self.run_push(
            lambda pid: person_doc(int(pid), phones=("+14155550199",), job_title="Intern"),
            deliveries=[("d1", props_)], search=search)
        self.assertIsInstance(out[0], L.Retry)
        self.assertEqual(out[0].kind, L.READBACK_MISMATCH, out[0])
        self.assertTrue(out[0].reason.startswith("person 456 does not hold"), out[0].reason)
        self.assertIn("job_title", out[0].reason)
        self.assertIn("phones", out[0].reason)
        self.assertNotIn("emails", out[0].reason)

    def test_extra_values_and_formatting_are_not_differences(self):
        props_ = props(name=" Jane Doe ", email="Jane@Example.com", phone="+1 (415) 555-0100",
                       **{HASH: "5.0"})
        _, out, _ = self.run_push(
            lambda pid: person_doc(int(pid), emails=("other@example.com", "jane@example.com"),
                                   phones=("+14155550100",), custom_fields={HASH: 5}),
            deliveries=[("d1", props_)])
        self.assertEqual(out, [L.Created("457")])

    def test_a_failed_read_leaves_the_write_standing(self):
        _, out, logs = self.run_push(lambda pid: resp(503, {"success": False, "error": "down"}))
        self.assertEqual(out, [L.Created("457")])
        self.assertTrue(any("read-back skipped" in m for _, m in logs), logs)

        def boom(pid):
            raise L.HttpFailure("timeout")
        _, out, _ = self.run_push(boom)
        self.assertEqual(out, [L.Created("457")])

    def test_a_throttled_read_defers_the_rest_of_the_batch(self):
        host, out, _ = self.run_push(
            lambda pid: resp(429, {"success": False}, headers=[("retry-after", "3")]),
            deliveries=[("d1", JANE), ("d2", props(name="Joe", email="joe@example.com"))])
        self.assertEqual(out, [L.Created("457"), L.RateLimited(3000)])
        self.assertFalse(any("joe" in r.url for r in host.requests))

    def test_percent_zero_reads_nothing_and_sampling_is_stable(self):
        host, out, _ = self.run_push(lambda pid: self.fail("read"), percent=0)
        self.assertEqual(out, [L.Created("457")])
        self.assertEqual([r.method for r in host.requests], ["GET", "POST"])
        ids = [f"job-{n}" for n in range(2000)]
        picked = [i for i in ids if L.stable_percent(i) < 25]
        self.assertTrue(400 < len(picked) < 600, len(picked))
        self.assertEqual(picked, [i for i in ids if L.stable_percent(i) < 25])
        # The same FNV-1a as the HubSpot adapter's stable_percent.
        self.assertEqual(L.stable_percent(""), 0xCBF29CE484222325 % 100)

    def test_the_setting_is_clamped(self):
        for raw, want in ((None, 100), ("", 100), ("abc", 100), (" 30 ", 30),
                          ("150", 100), ("-5", 0)):
            self.assertEqual(L.parse_readback_percent(raw), want, raw)


if __name__ == "__main__":
    unittest.main()
