#!/usr/bin/env python3
"""Independent checker for leads.jsonl (does not import gen_leads.py).

Requires the `phonenumbers` package (pip install phonenumbers).

Re-normalizes every lead the way the connector does (email: strip, lowercase,
IDN domain -> punycode; phone: E.164 with the source's default region) and
asserts that exact dedupe on (email OR phone) yields exactly one contact per
truth id. Exits non-zero on the first failed check.

    python3 verify_leads.py [leads.jsonl]
"""

import json
import os
import re
import sys
from collections import Counter, defaultdict

import phonenumbers

REGION = {"scraper": "US", "webform": "GB"}
IDD = {"scraper": "011", "webform": "00"}
FIELDS = {"email", "phone", "first_name", "last_name", "name", "company", "title", "website",
          "city", "country", "external_ref"}
RULES = {"missing_contact", "invalid_email", "invalid_phone", "wrong_type"}
# deliberately simple: exactly one "@", non-empty local part, dotted domain, no whitespace
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


def norm_email(v):
    """Normalized email or None if syntactically invalid."""
    e = v.strip().lower()
    if not EMAIL_RE.match(e):
        return None
    local, domain = e.rsplit("@", 1)
    try:
        domain = ".".join(label.encode("idna").decode("ascii") for label in domain.split("."))
    except UnicodeError:
        return None
    return local + "@" + domain


def norm_phone(v, source):
    """E.164 or None if not a valid number for the source's default region."""
    try:
        n = phonenumbers.parse(v, REGION[source])
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(n):
        return None
    return phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)


def check_phone_form(v, source, e164):
    """Format discipline (also guards against libphonenumber-port differences)."""
    s = v.strip()
    n = phonenumbers.parse(e164, None)
    region = phonenumbers.region_code_for_number(n)
    nsn = phonenumbers.national_significant_number(n)
    if s.startswith("+"):
        kind = "plus"
    elif s.startswith(IDD[source]):
        kind = "idd"
    else:
        kind = "national"
    if kind == "national":
        assert region == REGION[source], "national-format %s number in a %s lead: %r" % (region, source, v)
    if s.startswith("00") and source == "scraper":
        raise AssertionError("00-prefixed number in a scraper (US) lead: %r" % v)
    if "(0)" in s:
        assert region == "GB" and source == "webform", "'(0)' outside GB/webform: %r" % v
    if n.country_code != 1:
        assert not nsn.startswith(("0", "1")), "non-NANP number with NSN starting 0/1: %s" % e164
    if region == "GB":
        assert not nsn.startswith("7700") and not nsn.startswith("207946"), "Ofcom drama range: %s" % e164
    if region == "US":
        assert nsn[3:6] != "555", "555 exchange: %s" % e164


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "leads.jsonl")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            assert line.endswith("\n") and line.strip(), "line %d: blank or unterminated" % i
            rows.append(json.loads(line))

    key_owner = {}  # normalized email / phone -> truth
    emails_of, phones_of = defaultdict(set), defaultdict(set)
    seen_truth = set()
    valid = []  # (row index, truth, keys)
    invalid_contacts = []
    stats = Counter()

    for i, r in enumerate(rows, 1):
        assert set(r) <= {"source", "truth", "lead", "expect_error"}, "line %d: keys %s" % (i, set(r))
        src, truth, lead = r["source"], r["truth"], r["lead"]
        assert src in REGION, "line %d: source %r" % (i, src)
        assert isinstance(lead, dict) and set(lead) <= FIELDS, "line %d: lead keys %s" % (i, set(lead) - FIELDS)
        stats["rows"] += 1
        stats["rows_" + src] += 1

        if truth is None:
            err = r.get("expect_error")
            assert isinstance(err, dict) and err.get("rule") in RULES and isinstance(err.get("field"), str), \
                "line %d: bad expect_error %r" % (i, err)
            rule, field = err["rule"], err["field"]
            stats["invalid_" + rule] += 1
            em, ph = lead.get("email"), lead.get("phone")
            if rule == "missing_contact":
                assert em is None and ph is None, "line %d: missing_contact row has a contact" % i
            elif rule == "invalid_email":
                assert isinstance(em, str) and norm_email(em) is None, "line %d: email %r is valid" % (i, em)
                assert ph is None, "line %d: invalid_email row carries a phone" % i
            elif rule == "invalid_phone":
                assert isinstance(ph, str) and norm_phone(ph, src) is None, "line %d: phone %r is valid" % (i, ph)
                assert em is None, "line %d: invalid_phone row carries an email" % i
            elif rule == "wrong_type":
                assert field in lead and lead[field] is not None and not isinstance(lead[field], str), \
                    "line %d: field %s is not wrongly typed" % (i, field)
                # a wrongly typed contact must be the row's only contact
                if field in ("email", "phone"):
                    other = ph if field == "email" else em
                    assert other is None, "line %d: wrong_type %s row also carries another contact" % (i, field)
            else:
                raise AssertionError(rule)
            if rule != "wrong_type":
                assert field == ("phone" if rule == "invalid_phone" else "email"), "line %d: field %r" % (i, field)
            # any stringly contact in an invalid row must not belong to a person (checked below)
            for k in ("email", "phone"):
                v = lead.get(k)
                if isinstance(v, list):
                    v = v[0] if v and isinstance(v[0], str) else None
                elif isinstance(v, int) and not isinstance(v, bool):
                    v = "+" + str(v) if len(str(v)) == 11 else str(v)
                if isinstance(v, str):
                    invalid_contacts.append((i, k, v, src))
            continue

        assert "expect_error" not in r, "line %d: valid row with expect_error" % i
        assert re.fullmatch(r"p\d{4}", truth), "line %d: truth %r" % (i, truth)
        for k, v in lead.items():
            assert v is None or isinstance(v, str), "line %d: %s has type %s in a valid row" % (i, k, type(v).__name__)
        stats["valid"] += 1
        stats["valid_" + src] += 1
        keys = []
        em, ph = lead.get("email"), lead.get("phone")
        if em is not None:
            assert em.strip(), "line %d: empty email string in a valid row" % i
            ne = norm_email(em)
            assert ne is not None, "line %d: invalid email %r in a valid row" % (i, em)
            keys.append(("email", ne))
            emails_of[truth].add(ne)
            if any(ord(c) > 127 for c in em):
                stats["email_unicode_domain"] += 1
            elif "xn--" in em.lower():
                stats["email_punycode_domain"] += 1
        if ph is not None:
            assert ph.strip(), "line %d: empty phone string in a valid row" % i
            np_ = norm_phone(ph, src)
            assert np_ is not None, "line %d: invalid phone %r for source %s" % (i, ph, src)
            check_phone_form(ph, src, np_)
            keys.append(("phone", np_))
            phones_of[truth].add(np_)
        assert keys, "line %d: valid row without email or phone" % i
        if truth not in seen_truth:
            seen_truth.add(truth)
            assert em is not None, "line %d: first row of %s has no email" % (i, truth)
        for key in keys:
            owner = key_owner.setdefault(key, truth)
            assert owner == truth, "line %d: %s=%s belongs to %s and %s" % (i, key[0], key[1], owner, truth)
        valid.append((i, truth, keys))

    # one canonical email / phone per person
    for t in seen_truth:
        assert len(emails_of[t]) == 1, "%s has emails %s" % (t, emails_of[t])
        assert len(phones_of[t]) <= 1, "%s has phones %s" % (t, phones_of[t])

    # invalid rows never touch a person's contact
    for i, k, v, src in invalid_contacts:
        nk = norm_email(v) if k == "email" else norm_phone(v, src)
        if nk is not None:
            assert (k, nk) not in key_owner, "line %d: invalid row reuses %s of %s" % (i, k, key_owner[(k, nk)])

    # exact dedupe simulation, file order; two variants of what a duplicate does with its
    # fingerprints: "strict" (only accepted leads' fingerprints count) and "enrich" (a duplicate
    # adds its new fingerprints to the matched contact). Both must give one contact per truth.
    for variant in ("strict", "enrich"):
        fp = {}
        contact_truth = []
        for i, truth, keys in valid:
            hits = {fp[k] for k in keys if k in fp}
            assert len(hits) <= 1, "line %d: matches several contacts (%s)" % (i, variant)
            if hits:
                cid = hits.pop()
                assert contact_truth[cid] == truth, "line %d: merged into %s's contact (%s)" % (i, contact_truth[cid], variant)
                if variant == "enrich":
                    for k in keys:
                        fp.setdefault(k, cid)
            else:
                cid = len(contact_truth)
                contact_truth.append(truth)
                for k in keys:
                    fp[k] = cid
        dup = [t for t, n in Counter(contact_truth).items() if n > 1]
        assert not dup, "%s: several contacts for %s" % (variant, dup[:5])
        assert len(contact_truth) == len(seen_truth), variant

    # union-find over shared fingerprints == truth clusters
    parent = list(range(len(valid)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first_with = {}
    for idx, (_, _, keys) in enumerate(valid):
        for k in keys:
            if k in first_with:
                parent[find(idx)] = find(first_with[k])
            else:
                first_with[k] = idx
    clusters = defaultdict(set)
    for idx, (_, truth, _) in enumerate(valid):
        clusters[find(idx)].add(truth)
    cluster_truths = sorted(tuple(sorted(c)) for c in clusters.values())
    assert all(len(c) == 1 for c in cluster_truths), "cluster mixes truths"
    assert len(cluster_truths) == len(seen_truth), "truth split over several clusters"

    per_truth = Counter(t for _, t, _ in valid)
    n_inv = stats["rows"] - stats["valid"]
    print("OK: %s" % path)
    print("rows %d | persons %d | valid rows %d | duplicates %d | invalid %d (%.1f%%)"
          % (stats["rows"], len(seen_truth), stats["valid"], stats["valid"] - len(seen_truth), n_inv,
             100.0 * n_inv / stats["rows"]))
    print("persons by copies: %s" % dict(sorted(Counter(per_truth.values()).items())))
    print("invalid by rule: %s" % {r: stats["invalid_" + r] for r in sorted(RULES)})
    print("rows per source: scraper %d (valid %d), webform %d (valid %d)"
          % (stats["rows_scraper"], stats["valid_scraper"], stats["rows_webform"], stats["valid_webform"]))
    print("IDN email renderings: unicode %d, punycode %d" % (stats["email_unicode_domain"], stats["email_punycode_domain"]))
    print("expected CRM contacts: %d" % len(seen_truth))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL: %s" % e, file=sys.stderr)
        sys.exit(1)
