"""Zoho's official Python SDK (PyPI zohocrmsdk8-0) against the simulator's
Zoho CRM: it must accept the simulator's answers as it accepts Zoho's. Run
by tests/e2e (vendor_clients) as

    python zoho_client.py BASE_URL WORK_DIR

with BASE_URL the simulator's and WORK_DIR an empty folder for the SDK's
token store and log. Exits non-zero on the first surprise.
"""

import sys

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.api.logger import Logger
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.parameter_map import ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.record import (
    ActionWrapper,
    APIException,
    BodyWrapper,
    GetRecordsParam,
    Record,
    RecordOperations,
    ResponseWrapper,
    SearchRecordsParam,
    SuccessResponse,
)
from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig

BASE = sys.argv[1].rstrip("/")
WORK = sys.argv[2]

# The SDK's own way to name a data centre: API host, accounts (token) URL,
# file-upload host. The token answer's api_domain is the simulator too.
Initializer.initialize(
    environment=DataCenter.Environment(BASE, f"{BASE}/oauth/v2/token", BASE),
    token=OAuthToken(
        client_id="sim-client", client_secret="sim-client-secret", refresh_token="sim-refresh-token"
    ),
    store=FileStore(f"{WORK}/tokens.txt"),
    sdk_config=SDKConfig(auto_refresh_fields=False, pick_list_validation=True),
    resource_path=WORK,
    logger=Logger.get_instance(level=Logger.Levels.INFO, file_path=f"{WORK}/sdk.log"),
)
leads = RecordOperations("Leads")


def record(**fields):
    r = Record()
    for k, v in fields.items():
        r.add_key_value(k, v)
    return r


def results(response, status):
    assert response is not None, "no response"
    assert response.get_status_code() == status, (response.get_status_code(), response.get_object())
    obj = response.get_object()
    assert isinstance(obj, ActionWrapper), obj
    return obj.get_data()


# Insert: one good record, one with a bad email (207, each its own answer).
body = BodyWrapper()
body.set_data([
    record(Last_Name="Doe", First_Name="Jane", Company="Acme", Email="jane.sdk@example.com", Leadgate_Id="lg-1"),
    record(Last_Name="Bad", Email="not-an-email"),
])
body.set_trigger([])
ok, bad = results(leads.create_records(body), 207)
assert isinstance(ok, SuccessResponse) and ok.get_code().get_value() == "SUCCESS", ok
lead_id = ok.get_details()["id"]
assert isinstance(bad, APIException) and bad.get_code().get_value() == "INVALID_DATA", bad
assert bad.get_details()["api_name"] == "Email", bad.get_details()

# A second insert with the same unique key: DUPLICATE_DATA naming the record.
body = BodyWrapper()
body.set_data([record(Last_Name="Again", Leadgate_Id="lg-1")])
(dup,) = results(leads.create_records(body), 400)
assert dup.get_code().get_value() == "DUPLICATE_DATA", dup
# (The SDK reads duplicate_record into its own DuplicateRecord type.)
assert str(dup.get_details()["duplicate_record"].get_id()) == str(lead_id), dup.get_details()

# Upsert by the unique key: the first updated, the second inserted.
body = BodyWrapper()
body.set_data([
    record(Last_Name="Doe-Smith", Leadgate_Id="lg-1"),
    record(Last_Name="Roe", Email="rita.sdk@example.com", Leadgate_Id="lg-2"),
])
body.set_duplicate_check_fields(["Leadgate_Id"])
updated, inserted = results(leads.upsert_records(body), 200)
assert updated.get_action().get_value() == "update", updated
assert str(updated.get_details()["id"]) == str(lead_id), updated.get_details()
assert inserted.get_action().get_value() == "insert", inserted

# Update by id, then read it back.
body = BodyWrapper()
body.set_data([record(City="Oslo")])
(done,) = results(leads.update_record(int(lead_id), body), 200)
assert isinstance(done, SuccessResponse), done
response = leads.get_record(int(lead_id), ParameterMap())
assert response.get_status_code() == 200, response.get_status_code()
(held,) = response.get_object().get_data()
values = held.get_key_values()
assert values["Last_Name"] == "Doe-Smith" and values["City"] == "Oslo", values

# List and search.
params = ParameterMap()
params.add(GetRecordsParam.fields, "Email,Last_Name")
listed = leads.get_records(params).get_object()
assert isinstance(listed, ResponseWrapper) and len(listed.get_data()) == 2, listed
params = ParameterMap()
params.add(SearchRecordsParam.email, "rita.sdk@example.com")
found = leads.search_records(params).get_object()
assert [r.get_key_value("Last_Name") for r in found.get_data()] == ["Roe"], found
params = ParameterMap()
params.add(SearchRecordsParam.email, "nobody@example.com")
assert leads.search_records(params).get_status_code() == 204

print("zohocrmsdk8-0: insert 207, DUPLICATE_DATA, upsert update/insert, update, get, list, search: ok")
