"""The `make run` demo: seed_demo builds a loopback federation on one installation, and "Test SSO" goes from the
demo IdP through this site's own SP runtime to /demo/, which shows what was delivered. Real runtime views, real
signatures; only the browser is Django's test client (it follows the auto-submitted forms the way a browser would)."""

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command

from federation import demo
from partnerships.models import Partnership

pytestmark = pytest.mark.django_db
PASSWORD = "demo-Password-1"


class Forms(HTMLParser):
    """The forms of a page: (action, method, {name: value}) with their input fields."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append((attrs.get("action", ""), (attrs.get("method") or "get").lower(), {}))
        elif tag == "input" and self.forms and attrs.get("name"):
            self.forms[-1][2][attrs["name"]] = attrs.get("value") or ""


def forms_of(response):
    parser = Forms()
    parser.feed(response.content.decode())
    return parser.forms


def follow(client, response, limit=10):
    """Follow redirects and auto-submitted POST forms (the SAML POST binding) until a page that is neither."""
    for _ in range(limit):
        if response.status_code in (301, 302, 303):
            location = urlsplit(response["Location"])
            response = client.get(location.path + (f"?{location.query}" if location.query else ""))
            continue
        forms = forms_of(response)
        posts = [f for f in forms if f[1] == "post" and ("SAMLResponse" in f[2] or "SAMLRequest" in f[2])]
        if response.status_code == 200 and posts:
            action, _, fields = posts[0]
            response = client.post(urlsplit(action).path, fields)
            continue
        return response
    pytest.fail("too many hops")


def test_seed_demo_is_idempotent_and_activates_both_partnerships(capsys, monkeypatch):
    monkeypatch.setenv("FEDERATION_DEMO_PASSWORD", PASSWORD)
    call_command("seed_demo", base_url="http://testserver")
    assert dict(Partnership.objects.values_list("name", "state")) == {demo.IDP_TO_SP: "active", demo.SP_TO_IDP: "active"}
    call_command("seed_demo", base_url="http://testserver")
    assert "Demo federation is ready." in capsys.readouterr().out
    assert Partnership.objects.count() == 2


def test_test_sso_lands_on_the_demo_page_with_the_delivered_attributes(client):
    demo.seed("http://testserver", PASSWORD)
    landing = client.get(demo.LANDING_PATH)
    assert "No one is signed in" in landing.content.decode()
    test_sso = landing.context["test_sso"]
    page = follow(client, client.get(test_sso))
    login = [f for f in forms_of(page) if "username" in f[2] and "password" in f[2]]
    assert login, page.content.decode()[:2000]
    action, _, fields = login[0]
    fields.update(username=demo.DEMO_USER, password=PASSWORD)
    done = follow(client, client.post(urlsplit(action).path or page.wsgi_request.path, fields))
    text = done.content.decode()
    assert done.wsgi_request.path == demo.LANDING_PATH, text[:2000]
    assert "Single sign-on worked" in text
    assert "demo@example.org" in text and "Demo User" in text and "federation-demo" in text
