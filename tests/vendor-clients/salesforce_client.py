"""simple-salesforce (PyPI), the most used Python client of Salesforce's
REST API, against the simulator: it must accept the simulator's answers as
it accepts Salesforce's. Run by tests/e2e (vendor_clients) as

    python salesforce_client.py BASE_URL

with BASE_URL the simulator's. Exits non-zero on the first surprise.
"""

import sys

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
)

BASE = sys.argv[1].rstrip("/")


class PlainHttp(HTTPAdapter):
    """simple-salesforce builds https:// URLs from the instance host; the
    simulator listens on plain HTTP on loopback. Only the scheme changes."""

    def send(self, request, **kwargs):
        request.url = request.url.replace("https://", "http://", 1)
        return super().send(request, **kwargs)


session = requests.Session()
session.mount("https://", PlainHttp())

# The refresh-token grant, as a connected app does it.
token = requests.post(
    f"{BASE}/services/oauth2/token",
    data={
        "grant_type": "refresh_token",
        "refresh_token": "sim-refresh-token",
        "client_id": "sim-client",
        "client_secret": "sim-client-secret",
    },
    timeout=10,
).json()
assert token["token_type"] == "Bearer", token
assert "expires_in" not in token, "Salesforce's token answer has no lifetime"

sf = Salesforce(
    instance_url=token["instance_url"],
    session_id=token["access_token"],
    session=session,
    version="62.0",
)

# Create, read.
created = sf.Lead.create(
    {"FirstName": "Vendor", "LastName": "Client", "Company": "Acme", "Email": "vendor.client@example.com"}
)
assert created["success"] is True and created["id"].startswith("00Q"), created
lead_id = created["id"]
lead = sf.Lead.get(lead_id)
assert lead["Email"] == "vendor.client@example.com", lead
assert lead["attributes"]["type"] == "Lead", lead

# Upsert by an External ID: created, then updated (no second record).
status = sf.Lead.upsert(
    "Leadgate_Id__c/vendor-1",
    {"LastName": "Upsert", "Company": "Acme", "Email": "upsert.vendor@example.com"},
)
assert status == 201, status
status = sf.Lead.upsert("Leadgate_Id__c/vendor-1", {"Title": "CEO"})
assert status == 200, status
by_key = sf.Lead.get_by_custom_id("Leadgate_Id__c", "vendor-1")
assert by_key["Title"] == "CEO" and by_key["LastName"] == "Upsert", by_key
found = sf.query("SELECT Id FROM Lead WHERE Leadgate_Id__c = 'vendor-1'")
assert found["totalSize"] == 1, found

# Search (SOQL; email comparisons ignore case, as Salesforce's do).
found = sf.query("SELECT Id, Email FROM Lead WHERE Email = 'VENDOR.CLIENT@example.com'")
assert found["done"] is True and [r["Id"] for r in found["records"]] == [lead_id], found

# sObject Collections upsert with a partial failure, through restful().
answer = sf.restful(
    "composite/sobjects/Lead/Leadgate_Id__c",
    method="PATCH",
    json={
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Lead"}, "Leadgate_Id__c": "vendor-1", "City": "Oslo"},
            {"attributes": {"type": "Lead"}, "Leadgate_Id__c": "vendor-2", "FirstName": "NoLast"},
        ],
    },
)
assert answer[0] == {"id": by_key["Id"], "success": True, "errors": [], "created": False}, answer
assert answer[1]["success"] is False, answer
assert answer[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING", answer

# The standard duplicate rule blocks a second lead with the same email,
# naming the record it matched.
try:
    sf.Lead.create({"LastName": "Again", "Company": "Acme", "Email": "vendor.client@example.com"})
    raise AssertionError("the duplicate rule let a duplicate in")
except SalesforceMalformedRequest as e:
    error = e.content[0]
    assert error["errorCode"] == "DUPLICATES_DETECTED", error
    match = error["duplicateResult"]["matchResults"][0]["matchRecords"][0]["record"]["Id"]
    assert match == lead_id, error

# Limits: the header simple-salesforce parses, and GET /limits.
limits = sf.limits()
assert limits["DailyApiRequests"]["Max"] >= limits["DailyApiRequests"]["Remaining"] > 0, limits
assert sf.api_usage["api-usage"].used > 0, sf.api_usage

# An expired session is the exception simple-salesforce raises for it.
stale = Salesforce(instance_url=token["instance_url"], session_id="expired", session=session)
try:
    stale.query("SELECT Id FROM Lead")
    raise AssertionError("a bad session was accepted")
except SalesforceExpiredSession:
    pass

print("simple-salesforce: create, read, upsert x2, query, collections, duplicate rule, limits, session: ok")
