"""hubspot-api-client (PyPI), HubSpot's own Python client, against the
simulator's HubSpot: it must accept the simulator's answers as it accepts
HubSpot's. Run by tests/e2e (vendor_clients) as

    python hubspot_client.py BASE_URL

with BASE_URL the simulator's. Exits non-zero on the first surprise.
"""

import sys

from hubspot import HubSpot
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchReadInputSimplePublicObjectId,
    PublicGdprDeleteInput,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)

BASE = sys.argv[1].rstrip("/")

# The client's own configuration takes the API host (its default is
# https://api.hubapi.com).
client = HubSpot(access_token="sim-token", host=BASE)
contacts = client.crm.contacts

# Create, read.
created = contacts.basic_api.create(
    simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
        properties={"email": "vendor.hs@example.com", "firstname": "Vendor", "lastname": "Client"}
    )
)
assert created.id and created.properties["email"] == "vendor.hs@example.com", created
got = contacts.basic_api.get_by_id(created.id, properties=["email", "firstname"])
assert got.properties["firstname"] == "Vendor", got

# A second create with the same email: HubSpot's 409 CONFLICT naming the
# existing id.
try:
    contacts.basic_api.create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
            properties={"email": "vendor.hs@example.com"}
        )
    )
    raise AssertionError("a second contact with the same email was created")
except ApiException as e:
    assert e.status == 409, e
    assert f"Existing ID: {created.id}" in e.body, e.body

# Upsert by email: the existing contact is updated, a new one created.
upserted = contacts.batch_api.upsert(
    batch_input_simple_public_object_batch_input_upsert=BatchInputSimplePublicObjectBatchInputUpsert(
        inputs=[
            SimplePublicObjectBatchInputUpsert(
                id_property="email", id="vendor.hs@example.com", properties={"jobtitle": "CEO"}
            ),
            SimplePublicObjectBatchInputUpsert(
                id_property="email", id="vendor.hs2@example.com", properties={"firstname": "Second"}
            ),
        ]
    )
)
assert upserted.status == "COMPLETE", upserted
by_email = {r.properties["email"]: r for r in upserted.results}
assert by_email["vendor.hs@example.com"].id == created.id, upserted
assert by_email["vendor.hs@example.com"].new is False, upserted
assert by_email["vendor.hs2@example.com"].new is True, upserted

# Update, batch read.
contacts.basic_api.update(
    created.id, simple_public_object_input=SimplePublicObjectInput(properties={"phone": "+14155550100"})
)
read = contacts.batch_api.read(
    batch_read_input_simple_public_object_id=BatchReadInputSimplePublicObjectId(
        properties=["jobtitle", "phone"], inputs=[SimplePublicObjectId(id=created.id)]
    )
)
assert read.results[0].properties["jobtitle"] == "CEO", read
assert read.results[0].properties["phone"] == "+14155550100", read

# Search by email.
found = contacts.search_api.do_search(
    public_object_search_request=PublicObjectSearchRequest(
        filter_groups=[
            {"filters": [{"propertyName": "email", "operator": "EQ", "value": "vendor.hs2@example.com"}]}
        ],
        properties=["email"],
    )
)
assert found.total == 1 and found.results[0].properties["email"] == "vendor.hs2@example.com", found

# A bad token is HubSpot's 401.
stale = HubSpot(access_token="not-a-token", host=BASE)
try:
    stale.crm.contacts.basic_api.get_by_id(created.id)
    raise AssertionError("a bad token was accepted")
except ApiException as e:
    assert e.status == 401, e

# GDPR delete (what the adapter's erasure sends): gone for good; an id
# gone is HubSpot's 404.
gone = contacts.basic_api.create(
    simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
        properties={"email": "vendor.hs3@example.com"}
    )
).id
assert contacts.basic_api.purge(public_gdpr_delete_input=PublicGdprDeleteInput(object_id=gone)) is None
try:
    contacts.basic_api.get_by_id(gone)
    raise AssertionError("a purged contact was read")
except ApiException as e:
    assert e.status == 404, e
try:
    contacts.basic_api.purge(public_gdpr_delete_input=PublicGdprDeleteInput(object_id=gone))
    raise AssertionError("a purged id was purged again")
except ApiException as e:
    assert e.status == 404, e
contacts.basic_api.purge(
    public_gdpr_delete_input=PublicGdprDeleteInput(object_id="vendor.unknown@example.com", id_property="email")
)

print("hubspot-api-client: create, read, conflict, batch upsert, update, batch read, search, 401, gdpr delete: ok")
