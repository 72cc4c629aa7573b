"""App Attest enrollment over HTTP: attestation objects built as Apple documents them, with a test root
CA, an intermediate and a credential certificate this test makes with `cryptography`."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tandem.contract import request_signing as signing
from tandem.data.store import LocalStore
from tandem.fleet.gateway_client import Device, GatewayRefused
from tandem.gateway.attestation import AAGUID_DEVELOPMENT, NONCE_OID
from tandem.gateway.server import ThreadedGateway
from tandem.settings import Settings

APP_ID = "TEAMID1234.com.example.tandem"


def _cert(subject: str, key, issuer_name: str, issuer_key, ca: bool, extensions=()) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class TestCA:
    def __init__(self, name: str):
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.root = _cert(name, self.root_key, name, self.root_key, ca=True)
        self.inter_key = ec.generate_private_key(ec.SECP256R1())
        self.inter = _cert(f"{name} intermediate", self.inter_key, name, self.root_key, ca=True)

    def attest(self, install_public: bytes, app_id: str = APP_ID, bind_to: bytes | None = None) -> dict:
        """What DCAppAttestService.attestKey would return for a fresh App Attest key."""
        cred_key = ec.generate_private_key(ec.SECP256R1())
        point = signing.public_bytes(cred_key.public_key())
        key_id = hashlib.sha256(point).digest()
        auth = (hashlib.sha256(app_id.encode()).digest() + b"\x40" + (0).to_bytes(4, "big") + AAGUID_DEVELOPMENT
                + len(key_id).to_bytes(2, "big") + key_id)
        nonce = hashlib.sha256(auth + signing.enroll_client_data_hash(bind_to or install_public)).digest()
        ext = x509.UnrecognizedExtension(NONCE_OID, bytes([0x30, 0x24, 0xA1, 0x22, 0x04, 0x20]) + nonce)
        cred = _cert("credential", cred_key, f"{self.root.subject.rfc4514_string()[3:]} intermediate",
                     self.inter_key, ca=False, extensions=[ext])
        obj = cbor2.dumps({"fmt": "apple-appattest", "authData": auth,
                           "attStmt": {"x5c": [cred.public_bytes(serialization.Encoding.DER),
                                               self.inter.public_bytes(serialization.Encoding.DER)],
                                       "receipt": b"receipt"}})
        return {"format": "apple-appattest", "key_id": base64.b64encode(key_id).decode(),
                "object": base64.b64encode(obj).decode()}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    home = tmp_path_factory.mktemp("attest")
    ca = TestCA("Tandem Test App Attest Root")
    root = home / "root.pem"
    root.write_bytes(ca.root.public_bytes(serialization.Encoding.PEM))
    settings = Settings(home=home, gateway_attestation="apple-appattest", gateway_app_id=APP_ID,
                        gateway_appattest_root=root, gateway_appattest_production=False)
    store = LocalStore(home / "store")
    with ThreadedGateway(settings, store) as gw:
        yield gw, store, ca


def new_device(gw) -> Device:
    return Device(gw.url, ec.generate_private_key(ec.SECP256R1()))


def test_a_valid_attestation_enrolls_the_install(gateway):
    gw, store, ca = gateway
    d = new_device(gw)
    answer = d.enroll(ca.attest(d.public))
    assert answer == {"install_id": d.install_id, "status": "enrolled"}
    record = json.loads(store.get(f"gateway/installs/{d.install_id}.json"))
    assert record["attestation"]["format"] == "apple-appattest" and record["public_key"] == d.public.hex()
    assert d.enroll(ca.attest(d.public))["status"] == "already enrolled"


@pytest.mark.parametrize("case,words", [
    ("other app", "rpIdHash"),
    ("other key", "nonce does not match"),
    ("other root", "does not reach the configured root"),
    ("wrong key id", "key_id is not the SHA-256"),
    ("not cbor", "not CBOR"),
    ("development", "not accepted here"),
])
def test_a_bad_attestation_is_refused_and_nothing_is_enrolled(gateway, case, words):
    gw, store, ca = gateway
    d = new_device(gw)
    if case == "other app":
        att = ca.attest(d.public, app_id="OTHERTEAM.com.example.other")
    elif case == "other key":
        att = ca.attest(d.public, bind_to=new_device(gw).public)
    elif case == "other root":
        att = TestCA("Someone Else").attest(d.public)
    elif case == "wrong key id":
        att = {**ca.attest(d.public), "key_id": base64.b64encode(b"\0" * 32).decode()}
    elif case == "not cbor":
        att = {**ca.attest(d.public), "object": base64.b64encode(b"\xff\x00garbage").decode()}
    else:
        att = {"format": "development"}
    with pytest.raises(GatewayRefused) as e:
        d.enroll(att)
    assert e.value.status in (400, 401) and words in e.value.detail and "\n" not in e.value.detail
    assert not store.exists(f"gateway/installs/{d.install_id}.json")
