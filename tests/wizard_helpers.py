"""Drive console forms with the Django test client the way a browser does: read the values the page
shows (inputs, checked boxes, selected options), change some, and press a named button."""

from lxml import html


def page_form(response, index=-1):
    """The values a browser would send from the page's `index`-th POST form: {name: [values]}."""
    document = html.fromstring(response.content.decode())
    forms = [form for form in document.forms if (form.get("method") or "").lower() == "post"]
    form = forms[index]
    values = {}
    for element in form.iter("input", "select", "textarea"):
        name = element.get("name")
        if not name or element.get("disabled") is not None:
            continue
        if element.tag == "input":
            kind = (element.get("type") or "text").lower()
            if kind in ("submit", "button", "file"):
                continue
            if kind in ("checkbox", "radio"):
                if element.get("checked") is not None:
                    values.setdefault(name, []).append(element.get("value") or "on")
                continue
            values.setdefault(name, []).append(element.get("value") or "")
        elif element.tag == "select":
            selected = [
                option.get("value", option.text or "") for option in element.iter("option") if option.get("selected") is not None
            ]
            if not selected and element.get("multiple") is None:
                options = list(element.iter("option"))
                selected = [options[0].get("value", options[0].text or "")] if options else []
            values.setdefault(name, []).extend(selected)
        else:
            values.setdefault(name, []).append(element.text or "")
    return values


def form_action(response, index=-1):
    """Where the page's `index`-th POST form posts to (its action, else the page itself)."""
    document = html.fromstring(response.content.decode())
    forms = [form for form in document.forms if (form.get("method") or "").lower() == "post"]
    return forms[index].get("action") or response.request["PATH_INFO"]


def buttons(response, index=-1):
    """[(name, value, text)] of the submit buttons of the page's `index`-th POST form, in document order."""
    document = html.fromstring(response.content.decode())
    forms = [form for form in document.forms if (form.get("method") or "").lower() == "post"]
    return [
        (button.get("name"), button.get("value"), button.text_content().strip())
        for button in forms[index].iter("button")
        if (button.get("type") or "submit") == "submit"
    ]


def field_errors(response, field_id):
    """Error messages shown next to the input with this id (the <ul id="<id>_errors">)."""
    document = html.fromstring(response.content.decode())
    found = document.get_element_by_id(f"{field_id}_errors", None)
    return [item.text_content().strip() for item in found.iter("li")] if found is not None else []


def submit(client, response_or_url, changes=None, action="next", base=None, url=None):
    """POST the page's form with `changes` ({name: value or [values]}; None removes) and a button."""
    values = dict(base if base is not None else page_form(response_or_url))
    for name, value in (changes or {}).items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value if isinstance(value, list) else [value]
    values["wizard_action"] = [action]
    target = url or form_action(response_or_url)
    return client.post(target, values)


def follow(client, response):
    """GET the redirect target of a 302 response (keeps the query string)."""
    assert response.status_code == 302, (response.status_code, response.content[:2000])
    return client.get(response["Location"])
