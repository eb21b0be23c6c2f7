"""LDAP login against a real OpenLDAP slapd the test starts on a free port and seeds.

(`make test` installs slapd and ldap-utils through scripts/install-slapd.sh.) Group -> role
mapping per ML Server: Owner/Contributor/Reader groups, Reader declared => a user in no
mapped group is denied; enabling LDAP disables the local admin login unless
O16N_LOCAL_LOGIN_WITH_EXTERNAL is set.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import statistics
import subprocess
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

with warnings.catch_warnings():  # ldap3 uses names pyasn1 deprecated
    warnings.simplefilter("ignore", DeprecationWarning)
    import ldap3

from common.errors import Unavailable
from common.settings import load
from tests.support import ADMIN_PASSWORD, WebNode, admin_cli, free_port, start_web_node, unique, wait_until
from webnode.auth.ldap import LdapAuthenticator
from webnode.settings import WebNodeSettings

BASE = "dc=o16n,dc=test"
ROOT_DN = f"cn=root,{BASE}"
ROOT_PASSWORD = "Root-Passw0rd!"
QUERY_DN = f"cn=query,ou=service,{BASE}"
QUERY_PASSWORD = "Query-Passw0rd!"
PEOPLE = {  # name: (password, groups)
    "alice": ("Alice-Passw0rd!", ["Administrators"]),
    "bob": ("Bob-Passw0rd!", ["RProgrammers"]),
    "carol": ("Carol-Passw0rd!", ["App developers"]),
    "dave": ("Dave-Passw0rd!", []),
    "erin": ("Erin-Passw0rd!", ["RProgrammers"]),
}
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


def _slapd() -> str:
    path = shutil.which("slapd") or "/usr/sbin/slapd"
    if not Path(path).exists():
        subprocess.run([str(Path(__file__).parent.parent / "scripts" / "install-slapd.sh")], check=True)
    return path


@dataclass
class Directory:
    url: str  # ldap://127.0.0.1:<port>
    ldaps_port: int
    ca_file: Path  # the CA that signed the LDAPS certificate
    process: subprocess.Popen[bytes]


def _tls_files(workdir: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate for 127.0.0.1 / localhost signed by it (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("o16n test CA"))
        .issuer_name(name("o16n test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = workdir / "ca.pem", workdir / "server.pem", workdir / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture(scope="module")
async def slapd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Directory]:
    """A slapd with an mdb database under BASE, on 127.0.0.1: LDAP and LDAPS on free ports."""
    workdir = tmp_path_factory.mktemp("slapd")
    (workdir / "db").mkdir()
    ca_file, cert_file, key_file = _tls_files(workdir)
    includes = "\n".join(f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS)
    (workdir / "slapd.conf").write_text(
        f"""{includes}
pidfile {workdir}/slapd.pid
TLSCACertificateFile {ca_file}
TLSCertificateFile {cert_file}
TLSCertificateKeyFile {key_file}
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 10485760
suffix "{BASE}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {workdir}/db
access to attrs=userPassword by anonymous auth by self write by * none
access to * by users read by anonymous auth
"""
    )
    url, ldaps_port = f"ldap://127.0.0.1:{free_port()}", free_port()
    process = _start_slapd(workdir, f"{url}/ ldaps://127.0.0.1:{ldaps_port}/")
    await wait_until(lambda: _bound(url), timeout=30, what="slapd")
    _seed(url)
    yield Directory(url, ldaps_port, ca_file, process)
    if process.poll() is None:
        process.terminate()
        process.wait(10)


def _start_slapd(workdir: Path, urls: str) -> subprocess.Popen[bytes]:
    with open(workdir / "slapd.log", "wb") as log:
        return subprocess.Popen(
            [_slapd(), "-d", "0", "-f", str(workdir / "slapd.conf"), "-h", urls],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def _bound(url: str) -> bool:
    connection = ldap3.Connection(ldap3.Server(url, connect_timeout=1), ROOT_DN, ROOT_PASSWORD)
    return bool(connection.bind())


def _seed(url: str) -> None:
    connection = ldap3.Connection(ldap3.Server(url), ROOT_DN, ROOT_PASSWORD, auto_bind=True)
    adds: list[tuple[str, list[str], dict[str, object]]] = [
        (BASE, ["dcObject", "organization"], {"dc": "o16n", "o": "o16n test"}),
        (f"ou=people,{BASE}", ["organizationalUnit"], {"ou": "people"}),
        (f"ou=groups,{BASE}", ["organizationalUnit"], {"ou": "groups"}),
        (f"ou=service,{BASE}", ["organizationalUnit"], {"ou": "service"}),
        (QUERY_DN, ["person"], {"cn": "query", "sn": "query", "userPassword": QUERY_PASSWORD}),
    ]
    for name, (password, _) in PEOPLE.items():
        adds.append(
            (
                f"cn={name},ou=people,{BASE}",
                ["inetOrgPerson"],
                {"cn": name, "sn": name.title(), "uid": f"{name}.uid", "userPassword": password},
            )
        )
    groups: dict[str, list[str]] = {}
    for name, (_, member_of) in PEOPLE.items():
        for group in member_of:
            groups.setdefault(group, []).append(f"cn={name},ou=people,{BASE}")
    for group, members in groups.items():
        adds.append((f"cn={group},ou=groups,{BASE}", ["groupOfNames"], {"cn": group, "member": members}))
    for dn, classes, attributes in adds:
        assert connection.add(dn, classes, attributes), (dn, connection.result)
    connection.unbind()


def _ldap_env(url: str, **extra: str) -> dict[str, str]:
    port = url.rsplit(":", 1)[1]
    return {
        "O16N_LDAP_ENABLED": "true",
        "O16N_LDAP_HOST": "127.0.0.1",
        "O16N_LDAP_PORT": port,
        "O16N_LDAP_QUERY_USER_DN": QUERY_DN,
        "O16N_LDAP_QUERY_USER_PASSWORD": QUERY_PASSWORD,
        "O16N_LDAP_SEARCH_BASE": f"ou=people,{BASE}",
        "O16N_LDAP_SEARCH_FILTER": "(&(objectClass=inetOrgPerson)(cn={0}))",
        "O16N_LDAP_GROUP_SEARCH_BASE": f"ou=groups,{BASE}",
        "O16N_LDAP_TIMEOUT": "3",
        "O16N_LOGIN_MAX_FAILURES_PER_USER": "100",  # the timing comparison fails logins on purpose
        "O16N_LOGIN_MAX_FAILURES_PER_ADDRESS": "1000",
        **extra,
    }


@pytest.fixture(scope="module")
async def mapped(
    slapd: Directory, compute_node: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WebNode]:
    """LDAP with all three role groups declared (so users in no mapped group are denied)."""
    env = _ldap_env(
        slapd.url,
        O16N_ROLE_OWNER_GROUPS="Administrators",
        O16N_ROLE_CONTRIBUTOR_GROUPS="RProgrammers,Quality",
        O16N_ROLE_READER_GROUPS="App developers",
    )
    node = await start_web_node(tmp_path_factory.mktemp("ldap-mapped"), [compute_node], **env)
    yield node
    node.process.stop()


@pytest.fixture(scope="module")
async def unmapped(
    slapd: Directory, compute_node: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WebNode]:
    """LDAP with no role groups, the unique user id attribute, and local logins kept on."""
    env = _ldap_env(
        slapd.url, O16N_LOCAL_LOGIN_WITH_EXTERNAL="true", O16N_LDAP_UNIQUE_USER_IDENTIFIER_ATTRIBUTE_NAME="uid"
    )
    node = await start_web_node(tmp_path_factory.mktemp("ldap-unmapped"), [compute_node], **env)
    yield node
    node.process.stop()


async def _login(http: aiohttp.ClientSession, node: WebNode, username: str, password: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with http.post(f"{node.url}/login", json={"username": username, "password": password}) as resp:
        return resp.status, await resp.json()


def _claims(body: dict[str, object]) -> dict[str, object]:
    return dict(jwt.decode(str(body["access_token"]), options={"verify_signature": False}))


async def test_groups_map_to_roles(mapped: WebNode, http: aiohttp.ClientSession) -> None:
    expected = {"alice": "Owner", "bob": "Contributor", "carol": "Reader"}
    for name, role in expected.items():
        status, body = await _login(http, mapped, name, PEOPLE[name][0])
        assert status == 200, body
        claims = _claims(body)
        assert claims["sub"] == name and claims["role"] == role
    # Reader is declared, so dave (in no mapped group) is denied although his password is right.
    status, body = await _login(http, mapped, "dave", PEOPLE["dave"][0])
    assert status == 403 and body["code"] == 403 and "no role" in body["message"]
    code, out, _ = await admin_cli(mapped, "audit", "--action", "login", "--limit", "20")
    assert code == 0 and "\tdave\tlogin\t-\tdenied\t" in out and "\talice\tlogin\t-\tsuccess\t" in out


async def test_roles_apply_to_the_api(mapped: WebNode, http: aiohttp.ClientSession) -> None:
    _, body = await _login(http, mapped, "carol", PEOPLE["carol"][0])
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    service = {
        "code": "y = 1",
        "runtimeType": "Python",
        "outputParameterDefinitions": [{"name": "y", "type": "numeric"}],
    }
    async with http.post(f"{mapped.url}/services/ldapsvc/1.0", json=service, headers=headers) as resp:
        assert resp.status == 403
    async with http.get(f"{mapped.url}/services", headers=headers) as resp:
        assert resp.status == 200
    _, body = await _login(http, mapped, "bob", PEOPLE["bob"][0])
    async with http.post(
        f"{mapped.url}/services/ldapsvc/1.0", json=service, headers={"Authorization": f"Bearer {body['access_token']}"}
    ) as resp:
        assert resp.status == 201, await resp.text()
    # A refresh of a directory user keeps the role mapped at login.
    async with http.post(f"{mapped.url}/login/refreshToken", json={"refreshToken": body["refresh_token"]}) as resp:
        assert resp.status == 200
        assert _claims(await resp.json())["role"] == "Contributor"


async def test_refresh_rereads_the_directory(mapped: WebNode, http: aiohttp.ClientSession, slapd: Directory) -> None:
    status, body = await _login(http, mapped, "erin", PEOPLE["erin"][0])
    assert status == 200 and _claims(body)["role"] == "Contributor"
    erin = f"cn=erin,ou=people,{BASE}"
    directory = ldap3.Connection(ldap3.Server(slapd.url), ROOT_DN, ROOT_PASSWORD, auto_bind=True)
    assert directory.modify(f"cn=RProgrammers,ou=groups,{BASE}", {"member": [(ldap3.MODIFY_DELETE, [erin])]})
    assert directory.modify(f"cn=App developers,ou=groups,{BASE}", {"member": [(ldap3.MODIFY_ADD, [erin])]})
    async with http.post(f"{mapped.url}/login/refreshToken", json={"refreshToken": body["refresh_token"]}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert _claims(body)["role"] == "Reader"  # the new group, mapped again at the refresh
    assert directory.delete(erin)
    directory.unbind()
    async with http.post(f"{mapped.url}/login/refreshToken", json={"refreshToken": body["refresh_token"]}) as resp:
        assert resp.status == 401  # gone from the directory: the login ends
    async with http.get(f"{mapped.url}/services", headers={"Authorization": f"Bearer {body['access_token']}"}) as resp:
        assert resp.status == 401


async def test_wrong_password_unknown_user_and_injection_are_401(mapped: WebNode, http: aiohttp.ClientSession) -> None:
    bodies = []
    for username, password in (("alice", "Wrong-Passw0rd!"), ("nobody", "Wrong-Passw0rd!"), ("*", "x"), ("al*", "y")):
        status, body = await _login(http, mapped, username, password)
        assert status == 401, (username, body)
        bodies.append(body)
    assert bodies[0] == bodies[1]
    wrong, unknown = [], []
    for _ in range(7):
        for username, times in (("bob", wrong), (unique("nobody"), unknown)):
            started = time.perf_counter()
            assert (await _login(http, mapped, username, "Wrong-Passw0rd!"))[0] == 401
            times.append(time.perf_counter() - started)
    print(
        f"LDAP median 401: wrong password {statistics.median(wrong) * 1000:.1f} ms, "
        f"unknown user {statistics.median(unknown) * 1000:.1f} ms"
    )
    status, body = await _login(http, mapped, "alice", "")
    assert status == 400  # an empty password never reaches the directory (it would be an anonymous bind)


async def test_ldap_disables_local_admin(mapped: WebNode, http: aiohttp.ClientSession) -> None:
    status, body = await _login(http, mapped, "admin", ADMIN_PASSWORD)
    assert status == 401 and body["code"] == 401


async def test_no_role_groups_default_and_local_login_kept(unmapped: WebNode, http: aiohttp.ClientSession) -> None:
    status, body = await _login(http, unmapped, "dave", PEOPLE["dave"][0])
    assert status == 200, body
    claims = _claims(body)
    assert claims["role"] == "Contributor"  # no roles configured -> Contributor
    assert claims["sub"] == "dave.uid"  # O16N_LDAP_UNIQUE_USER_IDENTIFIER_ATTRIBUTE_NAME=uid
    async with http.post(f"{unmapped.url}/login/refreshToken", json={"refreshToken": body["refresh_token"]}) as resp:
        assert resp.status == 200  # found again by its uid
        assert _claims(await resp.json())["sub"] == "dave.uid"
    status, body = await _login(http, unmapped, "admin", ADMIN_PASSWORD)
    assert status == 200 and _claims(body)["role"] == "Owner"
    code, out, _ = await admin_cli(unmapped, "user", "list")
    assert code == 0 and "dave.uid\tContributor\tldap" in out


async def test_ldaps(
    slapd: Directory, compute_node: str, tmp_path_factory: pytest.TempPathFactory, http: aiohttp.ClientSession
) -> None:
    env = _ldap_env(
        slapd.url,
        O16N_LDAP_USE_LDAPS="true",
        O16N_LDAP_PORT=str(slapd.ldaps_port),
        O16N_LDAP_CA_FILE=str(slapd.ca_file),
    )
    node = await start_web_node(tmp_path_factory.mktemp("ldaps"), [compute_node], **env)
    try:
        status, body = await _login(http, node, "bob", PEOPLE["bob"][0])
        assert status == 200, body
        assert _claims(body)["role"] == "Contributor"
    finally:
        node.process.stop()
    # A CA that did not sign the server's certificate: the directory is unusable (503), never a 500.
    other_ca, _, _ = _tls_files(tmp_path_factory.mktemp("other-ca"))
    settings = load(
        WebNodeSettings,
        _ldap_env(slapd.url, O16N_LDAP_USE_LDAPS="true"),
        ldap_port=slapd.ldaps_port,
        ldap_ca_file=str(other_ca),
    )
    with pytest.raises(Unavailable):
        await LdapAuthenticator(settings).authenticate("bob", PEOPLE["bob"][0])


async def test_directory_down_is_503(mapped: WebNode, http: aiohttp.ClientSession, slapd: Directory) -> None:
    """Runs last in this module: stops slapd."""
    slapd.process.terminate()
    slapd.process.wait(10)
    status, body = await _login(http, mapped, "alice", PEOPLE["alice"][0])
    assert status == 503 and body["code"] == 503 and "LDAP" in body["message"]
    assert "Traceback" not in str(body)
