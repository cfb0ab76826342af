"""The origin in the URLs the server hands out: ``--public-url``, and the forwarded headers
of the proxies ``--forwarded-allow-ips`` trusts, through real servers; then the nginx
example of docs/deploy/ terminating TLS (a certificate made here) in front of a real
server, with a page served over https that loads the snippet in Chromium."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.browser import chromium
from tests.support import Seed, Server, free_port, running_server, seed_store

ROOT = Path(__file__).resolve().parent.parent
NGINX_EXAMPLE = ROOT / "docs" / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = pytest.mark.server


class Served(msgspec.Struct):
    server: Server
    seed: Seed


@contextmanager
def served(data: Path, *args: str) -> Iterator[Served]:
    seed = seed_store(data / "splitedge.sqlite3")
    with running_server(data, args=["--allow-private-targets", *args]) as server:
        yield Served(server, seed)


@pytest.fixture(scope="module")
def trusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server that believes forwarded headers from loopback, as behind a local proxy."""
    with served(tmp_path_factory.mktemp("trusting") / "data",
                "--forwarded-allow-ips", "10.0.0.0/8, 127.0.0.1") as s:  # fmt: skip
        yield s


def create_site(s: Served, url: str, headers: dict[str, str] | None = None,
                base: str | None = None) -> dict[str, Any]:  # fmt: skip
    response = httpx.post(
        (base or s.server.base_url) + "/v1/sites",
        json={"url": url},
        headers={"authorization": f"Bearer {s.seed.key.key}", **(headers or {})},
        timeout=30,
        verify=False,
    )
    assert response.status_code in (200, 201), response.text
    return dict(response.json()["data"])


def snippet_src(site: dict[str, Any]) -> str:
    tag = site["snippet"]
    assert tag.startswith('<script src="') and tag.endswith('"></script>'), tag
    return str(tag.removeprefix('<script src="').removesuffix('"></script>'))


def report_url(s: Served, headers: dict[str, str], base: str | None = None) -> str:
    response = httpx.get(
        f"{base or s.server.base_url}/v1/experiments/{s.seed.experiment_id}/results",
        headers={"authorization": f"Bearer {s.seed.key.key}", **headers},
        timeout=60,
        verify=False,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["report_url"])


def test_without_forwarded_headers_urls_name_the_request_origin(trusting: Served) -> None:
    site = create_site(trusting, "plain.example.com")
    key = site["public_key"]
    assert snippet_src(site) == f"{trusting.server.base_url}/s/{key}.js"
    assert report_url(trusting, {}).startswith(trusting.server.base_url + "/reports/")


def test_x_forwarded_headers_from_a_trusted_proxy_set_the_origin(trusting: Served) -> None:
    headers = {"x-forwarded-proto": "https", "x-forwarded-host": "ab.example.com:8443"}
    site = create_site(trusting, "xfwd.example.com", headers)
    assert snippet_src(site) == f"https://ab.example.com:8443/s/{site['public_key']}.js"
    assert site["snippet"] in site["instructions"]
    assert report_url(trusting, headers).startswith("https://ab.example.com:8443/reports/")


def test_rfc_7239_forwarded_wins_over_x_forwarded(trusting: Served) -> None:
    headers = {
        "forwarded": 'for=203.0.113.9;proto=https;host="fw.example.com", for=10.1.2.3',
        "x-forwarded-host": "ignored.example.com",
    }
    site = create_site(trusting, "fwd.example.com", headers)
    assert snippet_src(site).startswith("https://fw.example.com/s/")
    assert report_url(trusting, headers).startswith("https://fw.example.com/reports/")


def test_a_forwarded_host_that_is_not_a_host_is_ignored(trusting: Served) -> None:
    headers = {"x-forwarded-proto": "javascript", "x-forwarded-host": 'x"><script>alert(1)'}
    site = create_site(trusting, "odd.example.com", headers)
    assert snippet_src(site).startswith(trusting.server.base_url + "/s/")


def test_the_mcp_create_site_tool_names_the_forwarded_origin(trusting: Served) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "create_site", "arguments": {"url": "mcp.example.com"}},
    }
    headers = {
        "accept": "application/json, text/event-stream",
        "authorization": f"Bearer {trusting.seed.key.key}",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "ab.example.com",
    }
    response = httpx.post(trusting.server.base_url + "/mcp", json=call, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    text = response.json()["result"]["content"][0]["text"]
    assert "https://ab.example.com/s/" in text and trusting.server.base_url not in text, text


def test_get_root_is_the_console_sign_in_linking_the_docs(trusting: Served) -> None:
    home = httpx.get(trusting.server.base_url + "/", timeout=10)
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    assert 'name="api_key"' in home.text and 'href="/docs"' in home.text
    docs = httpx.get(trusting.server.base_url + "/docs", timeout=10)
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    signed_out = httpx.get(
        trusting.server.base_url + "/console/experiments",
        headers={"x-forwarded-proto": "https", "x-forwarded-host": "ab.example.com"},
        timeout=10,
    )
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/console/sign-in"


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(tmp_path: Path) -> None:
    headers = {"x-forwarded-proto": "https", "x-forwarded-host": "evil.example.com",
               "forwarded": "proto=https;host=evil.example.com"}  # fmt: skip
    with served(tmp_path / "data", "--forwarded-allow-ips", "10.0.0.0/8") as s:
        site = create_site(s, "untrusted.example.com", headers)
        assert snippet_src(site).startswith(s.server.base_url + "/s/")
        assert report_url(s, headers).startswith(s.server.base_url + "/reports/")


def test_public_url_sets_the_origin_of_every_url(tmp_path: Path) -> None:
    headers = {"x-forwarded-proto": "http", "x-forwarded-host": "other.example.com"}
    env = {"SPLITEDGE_PUBLIC_URL": "https://ab.example.com/edge/"}
    seed = seed_store(tmp_path / "data" / "splitedge.sqlite3")
    with running_server(tmp_path / "data", env=env,
                        args=["--forwarded-allow-ips", "*"]) as server:  # fmt: skip
        s = Served(server, seed)
        site = create_site(s, "public.example.com", headers)
        key = site["public_key"]
        assert snippet_src(site) == f"https://ab.example.com/edge/s/{key}.js"
        assert report_url(s, headers).startswith("https://ab.example.com/edge/reports/")
        home = httpx.get(server.base_url + "/", timeout=10)
        assert 'href="/edge/docs"' in home.text and 'action="/edge/console/sign-in"' in home.text
        # What the server printed at its first start names the public origin too.
        assert "https://ab.example.com/edge/demo" in server.output()


# --- nginx terminating TLS in front of the server -------------------------------------


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost; its PEM and key files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "splitedge test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem, key_file = directory / "cert.pem", directory / "cert.key"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pem, key_file


def substitute(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in text, f"docs/deploy/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


class Proxy(msgspec.Struct):
    origin: str
    page_origin: str


@contextmanager
def nginx(directory: Path, upstream_port: int, page_html: str) -> Iterator[Proxy]:
    """The example config in front of ``upstream_port``, on ports of its own, plus a
    second https server for the customer's page; nginx in the foreground, stopped by PID."""
    if not Path(NGINX).exists():
        raise AssertionError(f"{NGINX} is missing: install Debian's nginx (see .ci/run)")
    pem, key = make_certificate(directory)
    https_port, http_port, page_port = free_port(), free_port(), free_port()
    site_conf = substitute(
        NGINX_EXAMPLE.read_text(),
        {
            "127.0.0.1:8000": f"127.0.0.1:{upstream_port}",
            "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
            "listen 80;": f"listen 127.0.0.1:{http_port};",
            "/etc/ssl/certs/ab.example.com.pem": str(pem),
            "/etc/ssl/private/ab.example.com.key": str(key),
        },
    )
    (directory / "splitedge.conf").write_text(site_conf)
    www = directory / "www"
    www.mkdir()
    (www / "index.html").write_text(page_html)
    temp = " ".join(
        f"{kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")  # fmt: skip
    )
    (directory / "nginx.conf").write_text(f"""
user root;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    {temp}
    include {directory / "splitedge.conf"};
    server {{
        listen 127.0.0.1:{page_port} ssl;
        ssl_certificate {pem};
        ssl_certificate_key {key};
        default_type text/html;
        location / {{ root {www}; add_header cache-control no-store; }}
    }}
}}
""")
    with (directory / "stderr.log").open("w") as stderr:
        proc = subprocess.Popen(
            [NGINX, "-p", str(directory), "-e", str(directory / "error.log"),
             "-c", str(directory / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )  # fmt: skip
    try:
        origin = f"https://127.0.0.1:{https_port}"
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"nginx exited: {(directory / 'stderr.log').read_text()}")
            try:
                if httpx.get(origin + "/healthz", verify=False, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("nginx did not answer in 15 s")
            time.sleep(0.1)
        yield Proxy(origin, f"https://127.0.0.1:{page_port}")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGQUIT)  # graceful stop of the master and its worker
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.browser
def test_behind_nginx_with_tls_every_url_says_https_and_the_snippet_loads(
    tmp_path: Path, trusting: Served
) -> None:
    upstream = int(trusting.server.base_url.rsplit(":", 1)[1])
    # The page is written once its snippet tag is known; nginx serves it from disk.
    page = tmp_path / "nginx"
    page.mkdir()
    with nginx(page, upstream, "") as proxy:
        site = create_site(trusting, proxy.page_origin, base=proxy.origin)
        tag = site["snippet"]
        assert snippet_src(site) == f"{proxy.origin}/s/{site['public_key']}.js"
        assert tag in site["instructions"]
        html = (
            f"<!doctype html><html><head>{tag}</head><body>"
            '<h1 id="headline">Old headline</h1><a class="buy" href="#">Buy</a></body></html>'
        )
        (page / "www" / "index.html").write_text(html)
        created = httpx.post(
            proxy.origin + "/v1/experiments",
            headers={"authorization": f"Bearer {trusting.seed.key.key}"},
            json={
                "site_id": site["id"],
                "name": "Headline over TLS",
                "target_url": proxy.page_origin + "/index.html",
                "variants": [
                    {
                        "name": "New",
                        "changes": [
                            {
                                "selector": "#headline",
                                "action": "set_content",
                                "payload": "New headline",
                            }  # fmt: skip
                        ],
                    }
                ],
                "goals": [{"name": "Buy", "type": "click", "selector": ".buy"}],
                "auto_launch": True,
            },
            verify=False,
            timeout=30,
        )
        assert created.status_code == 201, created.text
        data = created.json()["data"]
        assert data["experiment"]["status"] == "running"
        (preview,) = data["preview_urls"]
        assert preview["url"].startswith(proxy.page_origin + "/index.html?sk_preview=")
        experiment_id = data["experiment"]["id"]
        results = httpx.get(
            f"{proxy.origin}/v1/experiments/{experiment_id}/results",
            headers={"authorization": f"Bearer {trusting.seed.key.key}"},
            verify=False,
            timeout=60,
        )
        assert results.status_code == 200, results.text
        report = results.json()["data"]["report_url"]
        assert report.startswith(f"{proxy.origin}/reports/{experiment_id}")
        assert httpx.get(report, verify=False, timeout=30).status_code == 200

        with chromium() as browser:
            context = browser.new_context(ignore_https_errors=True)
            try:
                tab = context.new_page()
                loaded: list[str] = []
                tab.on(
                    "response",
                    lambda r: loaded.append(r.url) if "/s/" in r.url and r.ok else None,
                )
                tab.goto(preview["url"])
                tab.wait_for_function(
                    "document.getElementById('headline').textContent === 'New headline'",
                    timeout=10_000,
                )
                # The snippet, then (the preview URL carries a token) its preview config,
                # both over https through the proxy.
                assert loaded[0] == snippet_src(site)
                assert all(url.startswith(proxy.origin + "/s/") for url in loaded), loaded
                assert tab.evaluate("location.protocol") == "https:"
            finally:
                context.close()
