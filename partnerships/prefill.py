"""First-visit values of the partnership wizard's steps, taken from the partnership's entities.

An entity is a template for its partnerships (reference ch01-08 F5.1): when the administrator first opens a step,
the values the entities already know are filled in — the signing key from the local entity, the verification and
encryption certificates from the remote entity, the assertion attributes from the local entity's entity-level
attributes, the NameID format from the remote entity's first format, the SSO bindings from the remote entity's
endpoints, one directory search spec per directory. The administrator may change every one of them; what is
changed stays in the partnership and never reaches the entity (F5.7).

Entities are passed as `services.entity_facts` dicts (the same copy the partnership keeps), so this module is
plain data in, plain data out: ``step_values(kind, step, local=..., remote=..., directories=...)`` returns only the
settings and tables it has a value for, in catalogue shape.
"""

from __future__ import annotations

from partnerships import catalog
from partnerships.catalog_choices import BINDING_URIS

EMBEDDED_SEARCH_SPEC = "username=%s"
LDAP_SEARCH_SPEC = "uid=%s"


def step_values(kind_key, step_key, *, local=None, remote=None, directories=()):
    """{setting or table key: value} to fill in on the step's first visit (only what the entities say).

    `local` / `remote` are entity facts (or None while not chosen), `directories` [(name, kind)] in order."""
    info = catalog.kind(kind_key)
    settings = {setting.key: setting for setting in catalog.settings_for(info, step_key)}
    tables = {table.key: table for table in catalog.tables_for(info, step_key)}
    values = {}
    fill = _FILLERS.get(step_key)
    if fill is not None:
        fill(info, values, local or {}, remote or {}, list(directories))
    # Keep only what this kind has, and choices the setting offers (an entity may list a format a kind cannot use).
    result = {}
    for key, value in values.items():
        if key in settings:
            value = _fit(settings[key], value)
            if value is not None:
                result[key] = value
        elif key in tables:
            columns = {column.key: column for column in catalog.columns_for(info, tables[key])}
            rows = []
            for row in value:
                fitted = {name: _fit(columns[name], cell) for name, cell in row.items() if name in columns}
                rows.append({name: cell for name, cell in fitted.items() if cell is not None})
            if rows:
                result[key] = [{**catalog.default_row(info, tables[key]), **row} for row in rows]
    return result


def _fit(setting, value):
    """The value if the setting can hold it, else None (left at its default)."""
    if value in (None, "", []):
        return None
    if setting.type == "choice":
        return value if value in setting.choice_values else None
    if setting.type == "multichoice":
        kept = [item for item in value if item in setting.choice_values]
        return kept or None
    if setting.type == "bool":
        return bool(value)
    return value


# --------------------------------------------------------------------------------------------------- per step


def _configure(info, values, local, remote, directories):
    if local.get("base_url"):
        values["base_url"] = local["base_url"]


def _assertion(info, values, local, remote, directories):
    formats = remote.get("name_id_formats") or []
    if formats:
        values["name_id_format"] = formats[0]
    attributes = []
    for attribute in local.get("attributes") or []:
        attributes.append(
            {
                "name": attribute.get("name"),
                "name_format": attribute.get("name_format"),
                "namespace": attribute.get("namespace"),
                "value_type": attribute.get("value_type") or "static",
                "value": attribute.get("value"),
            }
        )
    if attributes:
        values["attributes"] = attributes


def _search_specs(directories):
    return [
        {"directory": name, "search_spec": EMBEDDED_SEARCH_SPEC if kind == "embedded" else LDAP_SEARCH_SPEC}
        for name, kind in directories
    ]


def _user_identification(info, values, local, remote, directories):
    if directories:
        values["search_specs"] = _search_specs(directories)


def _sso_slo(info, values, local, remote, directories):
    short = _short_bindings(info.protocol)
    endpoints = remote.get("endpoints") or []

    def bindings(kind):
        found = []
        for endpoint in endpoints:
            name = short.get(endpoint.get("binding"))
            if endpoint.get("kind") == kind and name and name not in found:
                found.append(name)
        return found

    if info.asserting:
        values["sso_bindings"] = bindings("acs")  # how the partner SP takes assertions
    else:
        values["authn_request_bindings"] = bindings("sso")  # how the partner IdP takes requests
    slo = bindings("slo")
    if slo:
        values["slo_bindings"] = slo


def _signature(info, values, local, remote, directories):
    local_keys = local.get("keys") or {}
    remote_keys = remote.get("keys") or {}
    values["signing_key"] = local_keys.get("signing_key")
    values["decryption_key"] = local_keys.get("decryption_key")
    values["verification_certificate"] = remote_keys.get("verification_certificate")
    values["encryption_certificate"] = remote_keys.get("encryption_certificate")


def _short_bindings(protocol):
    """{binding URI: short name} of a protocol (the catalogue stores bindings by short name)."""
    return {uri: name for name, uri in BINDING_URIS.get(protocol, {}).items()}


_FILLERS = {
    "configure": _configure,
    "assertion": _assertion,
    "user_identification": _user_identification,
    "sso_slo": _sso_slo,
    "signature": _signature,
}


def initial_settings(kind_key, *, local=None, remote=None, directories=()):
    """A whole configuration as the wizard would first show it: the catalogue defaults with every step's
    pre-filled values over them (for the CLI-free paths that make a partnership without the wizard: the demo
    seed and the tests)."""
    config = catalog.defaults(kind_key)
    for step in catalog.steps_for(kind_key):
        config[step.key].update(step_values(kind_key, step.key, local=local, remote=remote, directories=directories))
    return config
