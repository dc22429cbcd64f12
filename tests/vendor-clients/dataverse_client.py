"""Microsoft's own Python SDK for Dataverse (PyPI PowerPlatform-Dataverse-Client,
module PowerPlatform.Dataverse) against the simulator's Dynamics 365 /
Dataverse Web API: it must accept the simulator's answers as it accepts
Dataverse's. Run by tests/e2e (vendor_clients) as

    python dataverse_client.py BASE_URL WORK_DIR

with BASE_URL the simulator's and WORK_DIR an empty folder. Exits non-zero on
the first surprise.

The SDK refuses any base URL that is not https:// (DataverseClient raises
ValueError for http://) and has no public way to swap its transport, while
the simulator serves plain HTTP. So this script puts a TLS front on
127.0.0.1 before it: a self-signed certificate for 127.0.0.1 (made here,
trusted through requests' own REQUESTS_CA_BUNDLE) and a relay that passes
every request and answer through byte for byte (headers, Host included).
The SDK itself runs unmodified, configured only through its public API: a
base URL and an azure-core TokenCredential.

The credential gets its token from the simulator's Entra ID endpoint
(POST /{tenant}/oauth2/v2.0/token, client_credentials, the scope the SDK
asks for: "<base>/.default").
"""

import datetime
import http.client
import http.server
import ipaddress
import os
import ssl
import sys
import threading
import time
import uuid
import warnings
from urllib.parse import urlsplit

import requests
from azure.core.credentials import AccessToken, TokenCredential

# cryptography comes with azure-identity, one of the SDK's requirements.
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from PowerPlatform.Dataverse import DataverseClient, col
from PowerPlatform.Dataverse import __version__ as SDK_VERSION
from PowerPlatform.Dataverse.core.errors import HttpError
from PowerPlatform.Dataverse.models.upsert import UpsertItem

BASE = sys.argv[1].rstrip("/")
WORK = sys.argv[2]
TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "sim-client"
CLIENT_SECRET = "sim-client-secret"

# The SDK's current API only: its deprecated calls warn (attributed to us).
warnings.filterwarnings("error", category=DeprecationWarning, module="__main__")


# --- A TLS front for the simulator ------------------------------------------


def self_signed_certificate(directory):
    """A key and a self-signed certificate for 127.0.0.1; returns their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "front-cert.pem")
    key_path = os.path.join(directory, "front-key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return cert_path, key_path


HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
SIM = urlsplit(BASE)
RELAYED = []  # (method, path, status) of every request the SDK sent


class Relay(http.server.BaseHTTPRequestHandler):
    """Passes one request to the simulator and its answer back, unchanged."""

    protocol_version = "HTTP/1.1"

    def relay(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(SIM.hostname, SIM.port, timeout=120)
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in HOP_BY_HOP:
                upstream.putheader(name, value)
        upstream.endheaders(body)
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        RELAYED.append((self.command, self.path, answer.status))
        self.send_response_only(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = relay

    def log_message(self, *args):
        pass


def tls_front():
    """Starts the front; returns its https:// base URL."""
    cert_path, key_path = self_signed_certificate(WORK)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # requests (the SDK's HTTP library) trusts what this names.
    os.environ["REQUESTS_CA_BUNDLE"] = cert_path
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    return f"https://127.0.0.1:{server.server_address[1]}"


# --- The credential: tokens from the simulator's Entra ID endpoint -----------


class SimulatorEntraCredential(TokenCredential):
    """An azure-core TokenCredential doing the client-credentials grant
    against the simulator's Entra ID token endpoint, cached per scope the
    way azure-identity's credentials cache."""

    def __init__(self):
        self.fetched = []
        self._cache = {}

    def get_token(self, *scopes, claims=None, tenant_id=None, enable_cae=False, **kwargs):
        assert len(scopes) == 1, scopes
        scope = scopes[0]
        cached = self._cache.get(scope)
        if cached and cached.expires_on - 60 > time.time():
            return cached
        r = requests.post(
            f"{BASE}/{tenant_id or TENANT}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "scope": scope,
            },
            timeout=30,
        )
        assert r.status_code == 200, (r.status_code, r.text)
        answer = r.json()
        assert answer["token_type"] == "Bearer" and answer["expires_in"] > 60, answer
        token = AccessToken(answer["access_token"], int(time.time()) + int(answer["expires_in"]))
        self.fetched.append(scope)
        self._cache[scope] = token
        return token


class BadCredential(TokenCredential):
    def get_token(self, *scopes, **kwargs):
        return AccessToken("not-a-token-the-simulator-issued", int(time.time()) + 3600)


# --- The run ------------------------------------------------------------------

FRONT = tls_front()
credential = SimulatorEntraCredential()
EMAIL = "ada.dv@example.com"
OTHER = "grace.dv@example.com"
LEAD_COLUMNS = [
    "firstname",
    "lastname",
    "emailaddress1",
    "companyname",
    "jobtitle",
    "address1_city",
    "leadsourcecode",
    "new_leadgateid",
]


def http_error(call, status, code=None):
    """Runs call, which must fail with HttpError status (and service code)."""
    try:
        call()
    except HttpError as e:
        assert e.status_code == status, (e.status_code, e.message, e.details)
        if code is not None:
            assert e.details.get("service_error_code") == code, e.details
        return e
    raise AssertionError(f"expected HTTP {status}")


# The SDK really does refuse the simulator's own http:// URL.
try:
    DataverseClient(BASE, credential)
    raise AssertionError("DataverseClient accepted an http:// base URL")
except ValueError as e:
    assert "https" in str(e).lower(), e

with DataverseClient(FRONT, credential) as client:
    # Create (204 + OData-EntityId; the SDK reads the GUID from the header).
    # A choice column by its label: the SDK resolves "Web" to its value
    # through the table's picklist metadata.
    lead_id = client.records.create(
        "lead",
        {
            "firstname": "Ada",
            "lastname": "Lovelace",
            "emailaddress1": EMAIL,
            "companyname": "Analytical Engines",
            "leadsourcecode": "Web",
            "new_leadgateid": "dv-1",
        },
    )
    assert str(uuid.UUID(lead_id)) == lead_id.lower(), lead_id

    # Read it back by id.
    lead = client.records.retrieve("lead", lead_id, select=LEAD_COLUMNS)
    assert lead is not None, "the created lead is not found"
    assert lead.id == lead_id, (lead.id, lead_id)
    assert lead.etag and lead.etag.startswith('W/"'), lead.etag
    assert lead["firstname"] == "Ada" and lead["lastname"] == "Lovelace", lead.data
    assert lead["emailaddress1"] == EMAIL and lead["companyname"] == "Analytical Engines", lead.data
    assert lead["leadsourcecode"] == 8, lead.data  # "Web"
    assert lead["new_leadgateid"] == "dv-1" and lead["jobtitle"] is None, lead.data
    first_etag = lead.etag

    # Update (PATCH with If-Match: *), then read again.
    client.records.update("lead", lead_id, {"jobtitle": "Countess", "companyname": "Analytical Society"})
    lead = client.records.retrieve("lead", lead_id, select=LEAD_COLUMNS)
    assert lead["jobtitle"] == "Countess" and lead["companyname"] == "Analytical Society", lead.data
    assert lead["firstname"] == "Ada", lead.data
    assert lead.etag != first_etag, (lead.etag, first_etag)

    # Query: $filter on emailaddress1, as a string and from the SDK's builder.
    found = client.records.list("lead", filter=f"emailaddress1 eq '{EMAIL}'", select=["emailaddress1", "lastname"])
    assert [r["leadid"] for r in found] == [lead_id], found
    found = client.records.list("lead", filter=col("emailaddress1") == EMAIL, select=["lastname"], count=True)
    assert [r["lastname"] for r in found] == ["Lovelace"], found
    assert len(client.records.list("lead", filter=col("emailaddress1") == "nobody.dv@example.com")) == 0

    # Upsert by the alternate key (new_leadgateid), one item: PATCH
    # leads(new_leadgateid='dv-1'), the existing row updated.
    client.records.upsert(
        "lead", [UpsertItem(alternate_key={"new_leadgateid": "dv-1"}, record={"address1_city": "London"})]
    )
    lead = client.records.retrieve("lead", lead_id, select=LEAD_COLUMNS)
    assert lead["address1_city"] == "London" and lead["jobtitle"] == "Countess", lead.data

    # Upsert several (UpsertMultiple): dv-1 updated, a key with a quote
    # (the SDK escapes it as '') creates a second lead.
    client.records.upsert(
        "lead",
        [
            UpsertItem(alternate_key={"new_leadgateid": "dv-1"}, record={"lastname": "King"}),
            UpsertItem(
                alternate_key={"new_leadgateid": "o'hopper-2"},
                record={"firstname": "Grace", "lastname": "Hopper", "emailaddress1": OTHER, "companyname": "Navy"},
            ),
        ],
    )
    lead = client.records.retrieve("lead", lead_id, select=LEAD_COLUMNS)
    assert lead["lastname"] == "King" and lead["address1_city"] == "London", lead.data
    (grace,) = client.records.list("lead", filter=col("emailaddress1") == OTHER, select=LEAD_COLUMNS)
    assert grace["new_leadgateid"] == "o'hopper-2" and grace["firstname"] == "Grace", grace.data
    grace_id = grace["leadid"]
    assert grace_id != lead_id

    # A second row with the alternate key's value: 412 0x80060892.
    http_error(
        lambda: client.records.create("lead", {"lastname": "Copy", "new_leadgateid": "dv-1"}), 412, "0x80060892"
    )
    # A row that is not there: retrieve answers None (a 404 underneath);
    # update (If-Match: *) is refused 404 and creates nothing.
    missing = str(uuid.uuid4())
    assert client.records.retrieve("lead", missing) is None
    http_error(lambda: client.records.update("lead", missing, {"lastname": "Ghost"}), 404, "0x80040217")

    # $batch: a change set (create, then update it through its Content-ID)
    # and a read outside it.
    batch = client.batch.new()
    with batch.changeset() as cs:
        alan = {"firstname": "Alan", "lastname": "Turing", "emailaddress1": "alan.dv@example.com"}
        ref = cs.records.create("lead", alan)
        cs.records.update("lead", ref, {"jobtitle": "Mathematician"})
    batch.records.retrieve("lead", lead_id, select=["lastname"])
    result = batch.execute()
    assert not result.has_errors, [(r.status_code, r.error_code, r.error_message) for r in result.failed]
    statuses = [r.status_code for r in result.responses]
    assert statuses == [204, 204, 200], statuses
    created, updated, read = result.responses
    alan_id = created.entity_id
    assert alan_id and alan_id not in (lead_id, grace_id), result.responses
    assert read.data and read.data["lastname"] == "King", read.data
    alan = client.records.retrieve("lead", alan_id, select=["lastname", "jobtitle"])
    assert alan["lastname"] == "Turing" and alan["jobtitle"] == "Mathematician", alan.data

    # Every lead, in one list; then one deleted (DELETE with If-Match: *).
    everyone = client.records.list("lead", select=["emailaddress1"], orderby=["emailaddress1 asc"])
    emails = [r["emailaddress1"] for r in everyone]
    assert emails == sorted(["alan.dv@example.com", EMAIL, OTHER]), emails
    client.records.delete("lead", alan_id)
    assert client.records.retrieve("lead", alan_id) is None
    everyone = client.records.list("lead", select=["emailaddress1"], orderby=["emailaddress1 desc"])
    assert [r["emailaddress1"] for r in everyone] == [OTHER, EMAIL], everyone

# A token the simulator did not issue: 401, which the SDK raises as HttpError.
with DataverseClient(FRONT, BadCredential()) as stranger:
    http_error(lambda: stranger.records.list("lead", top=1), 401)

# One token for the whole run, asked for the scope "<base>/.default".
assert credential.fetched == [f"{FRONT}/.default"], credential.fetched
assert all(status < 500 for _, _, status in RELAYED), RELAYED

print(
    f"PowerPlatform-Dataverse-Client {SDK_VERSION}: Entra client_credentials token, {len(RELAYED)} requests over TLS: "
    "create (choice label resolved), retrieve, update, list $filter/$orderby/$count, upsert by alternate key "
    "(PATCH and UpsertMultiple), 412 duplicate key, 404s, $batch with a change set and Content-ID, delete, 401: ok"
)
