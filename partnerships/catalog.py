"""The partnership settings catalogue: the single source of truth for what a partnership holds.

Every wizard step of the six partnership kinds, every setting on it (label, type, default, help, choices, which
kinds it exists for, when it is shown), the tables of rows, and the validation of a whole configuration with the
messages the administrator sees. The wizard forms, the config export/import, the activation snapshot and the
generated reference docs/partnership-settings.md are all built from it.

    from partnerships import catalog

    catalog.steps_for("saml2_idp_sp")                 # [StepSpec(configure), StepSpec(federation_users), ...]
    config, problems = catalog.normalize("saml2_idp_sp", posted_or_imported)
    problems = catalog.validate(config, catalog.ValidationContext(...))
    complete = not any(p.blocking for p in problems)  # Defined, otherwise Incomplete

A configuration is ``{step key: {setting key: value, table key: [row dicts]}}``. The partnership's name,
description, local and remote entity and directory list are model columns, not settings (`validate_name` holds the
name rule).

Layout: `catalog_schema` (types, kinds, predicates), `catalog_steps` (the steps and settings), `catalog_config`
(lookups, defaults, `normalize`), `catalog_rules` (`validate` and the window previews). This module is the public
face; import from here.
"""

from partnerships.catalog_choices import ALGORITHM_URIS, BINDING_URIS
from partnerships.catalog_config import (
    SESSION_STORE_SECTIONS,
    columns_for,
    default_row,
    default_value,
    defaults,
    kind,
    normalize,
    requires_session_store,
    settings_for,
    step_for,
    steps_for,
    tables_for,
    visible,
)
from partnerships.catalog_rules import acceptance_window, slo_window, url_problem, validate, validate_name, validity_window
from partnerships.catalog_schema import (
    KINDS,
    AllOf,
    AnyOf,
    EntityFacts,
    KeyFacts,
    KindInfo,
    Problem,
    Setting,
    StepSpec,
    TableSpec,
    ValidationContext,
    When,
)
from partnerships.catalog_steps import SESSION_STORE_NOTE, STEPS

__all__ = [
    "ALGORITHM_URIS",
    "AllOf",
    "AnyOf",
    "When",
    "BINDING_URIS",
    "KINDS",
    "SESSION_STORE_NOTE",
    "SESSION_STORE_SECTIONS",
    "STEPS",
    "EntityFacts",
    "KeyFacts",
    "KindInfo",
    "Problem",
    "Setting",
    "StepSpec",
    "TableSpec",
    "ValidationContext",
    "acceptance_window",
    "columns_for",
    "default_row",
    "default_value",
    "defaults",
    "kind",
    "normalize",
    "requires_session_store",
    "settings_for",
    "slo_window",
    "step_for",
    "steps_for",
    "tables_for",
    "url_problem",
    "validate",
    "validate_name",
    "validity_window",
    "visible",
]
