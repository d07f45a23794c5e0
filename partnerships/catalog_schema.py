"""The shapes of the partnership settings catalogue: partnership kinds, settings, tables, steps, problems and the
facts validation needs. `partnerships.catalog` is the public face; this module only holds the types and the small
predicates (`applies`, `visible_when`) the step definitions are written with.

Predicates are small callable objects rather than lambdas so that the generated settings reference
(docs/partnership-settings.md) can say in words which kinds a setting applies to and when it is shown.

Plain Python: nothing from Django, so the runtime, the console, the CLI and the config import share it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

# --- partnership kinds ---------------------------------------------------------------------------------------------

# entities.models.EntityType values (repeated here so this module stays free of Django models; a test checks they match).
SAML2_IDP, SAML2_SP = "saml2_idp", "saml2_sp"
SAML11_PRODUCER, SAML11_CONSUMER = "saml11_producer", "saml11_consumer"
WSFED_IP, WSFED_RP = "wsfed_ip", "wsfed_rp"


@dataclass(frozen=True)
class KindInfo:
    """One of the six partnership types offered by "Create partnership"."""

    key: str
    label: str
    protocol: str  # "saml2" | "saml11" | "wsfed"
    asserting: bool  # True when the LOCAL side is the asserting party (IdP / Producer / IP)
    local_entity_type: str
    remote_entity_type: str

    @property
    def relying(self) -> bool:
        return not self.asserting


KINDS: dict[str, KindInfo] = {
    info.key: info
    for info in (
        KindInfo("saml2_idp_sp", "SAML2 IdP → SP", "saml2", True, SAML2_IDP, SAML2_SP),
        KindInfo("saml2_sp_idp", "SAML2 SP → IdP", "saml2", False, SAML2_SP, SAML2_IDP),
        KindInfo("saml11_producer_consumer", "SAML1.1 Producer → Consumer", "saml11", True, SAML11_PRODUCER, SAML11_CONSUMER),
        KindInfo("saml11_consumer_producer", "SAML1.1 Consumer → Producer", "saml11", False, SAML11_CONSUMER, SAML11_PRODUCER),
        KindInfo("wsfed_ip_rp", "WS-Fed IP → RP", "wsfed", True, WSFED_IP, WSFED_RP),
        KindInfo("wsfed_rp_ip", "WS-Fed RP → IP", "wsfed", False, WSFED_RP, WSFED_IP),
    )
}


# --- predicates ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kinds:
    """`applies`: true for the partnership kinds listed (by key). Combine with ``&`` and ``|``."""

    keys: frozenset[str]

    def __call__(self, info: KindInfo) -> bool:
        return info.key in self.keys

    def __and__(self, other: Kinds) -> Kinds:
        return Kinds(self.keys & other.keys)

    def __or__(self, other: Kinds) -> Kinds:
        return Kinds(self.keys | other.keys)

    def describe(self) -> str:
        if self.keys == frozenset(KINDS):
            return "all kinds"
        return ", ".join(info.label for info in KINDS.values() if info.key in self.keys)


def _kinds(test: Callable[[KindInfo], bool]) -> Kinds:
    return Kinds(frozenset(info.key for info in KINDS.values() if test(info)))


always = _kinds(lambda info: True)
asserting = _kinds(lambda info: info.asserting)
relying = _kinds(lambda info: not info.asserting)
saml2 = _kinds(lambda info: info.protocol == "saml2")
saml11 = _kinds(lambda info: info.protocol == "saml11")
wsfed = _kinds(lambda info: info.protocol == "wsfed")
saml = saml2 | saml11
saml2_idp = saml2 & asserting
saml2_sp = saml2 & relying
saml11_producer = saml11 & asserting
saml11_consumer = saml11 & relying
wsfed_ip = wsfed & asserting
wsfed_rp = wsfed & relying
nothing = Kinds(frozenset())


@dataclass(frozen=True)
class When:
    """`visible_when`: shown when the step value ``key`` is one of ``values`` (for a multichoice: contains one of
    them; for a bool: ``values`` is ``(True,)``). ``&`` combines conditions."""

    key: str
    values: tuple = (True,)
    negate: bool = False

    def __call__(self, step_values: Mapping) -> bool:
        value = step_values.get(self.key)
        if isinstance(value, list | tuple | set | frozenset):
            hit = any(v in self.values for v in value)
        else:
            hit = value in self.values
        return hit != self.negate

    def __and__(self, other) -> AllOf:
        return AllOf((self, other))

    def describe(self) -> str:
        if self.values == (True,):
            text = f"{self.key} is ticked"
            return f"{self.key} is not ticked" if self.negate else text
        shown = " or ".join(str(v) for v in self.values)
        return f"{self.key} is not {shown}" if self.negate else f"{self.key} is {shown}"


@dataclass(frozen=True)
class AllOf:
    conditions: tuple

    def __call__(self, step_values: Mapping) -> bool:
        return all(condition(step_values) for condition in self.conditions)

    def __and__(self, other) -> AllOf:
        return AllOf((*self.conditions, other))

    def describe(self) -> str:
        return " and ".join(condition.describe() for condition in self.conditions)


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple

    def __call__(self, step_values: Mapping) -> bool:
        return any(condition(step_values) for condition in self.conditions)

    def __and__(self, other) -> AllOf:
        return AllOf((self, other))

    def describe(self) -> str:
        parts = [
            f"({condition.describe()})" if isinstance(condition, AllOf) else condition.describe() for condition in self.conditions
        ]
        return "(" + " or ".join(parts) + ")"


def any_of(*conditions) -> AnyOf:
    return AnyOf(tuple(conditions))


def when(key: str, *values, negate: bool = False) -> When:
    return When(key, values or (True,), negate)


def unless(key: str, *values) -> When:
    return When(key, values or (True,), True)


# --- settings, tables, steps ---------------------------------------------------------------------------------------

SETTING_TYPES = frozenset(
    {
        "bool",
        "int",
        "text",
        "textarea",
        "url",
        "choice",
        "multichoice",
        "expression",
        "key_pair",
        "certificate",
        "authn_template",
        "directory",
        "password",
    }
)
TEXT_TYPES = frozenset(
    {"text", "textarea", "url", "expression", "key_pair", "certificate", "authn_template", "directory", "password"}
)


@dataclass(frozen=True)
class Setting:
    key: str
    label: str
    type: str
    default: object = None
    help: str = ""
    choices: tuple = ()
    required: bool = False
    min_value: int | None = None
    max_value: int | None = None
    section: str = ""
    applies: Callable[[KindInfo], bool] = always
    visible_when: Callable[[dict], bool] | None = None

    def __post_init__(self):
        if self.type not in SETTING_TYPES:
            raise ValueError(f"Setting {self.key}: unknown type {self.type!r}")
        if self.type in ("choice", "multichoice") and not self.choices:
            raise ValueError(f"Setting {self.key}: a {self.type} needs choices")

    @property
    def choice_values(self) -> tuple:
        return tuple(value for value, _label in self.choices)

    def choice_label(self, value) -> str:
        for choice_value, label in self.choices:
            if choice_value == value:
                return label
        return str(value)


@dataclass(frozen=True)
class TableSpec:
    key: str
    label: str
    columns: tuple[Setting, ...]
    help: str = ""
    section: str = ""
    applies: Callable[[KindInfo], bool] = always
    visible_when: Callable[[dict], bool] | None = None

    def column(self, key: str) -> Setting | None:
        for column in self.columns:
            if column.key == key:
                return column
        return None


@dataclass(frozen=True)
class StepSpec:
    key: str
    title: str
    settings: tuple[Setting, ...]
    tables: tuple[TableSpec, ...] = ()
    applies: Callable[[KindInfo], bool] = always
    help: str = ""


# --- validation ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    step: str
    field: str  # setting key, "table_key.<row index>.column_key", or "" for the step
    message: str
    blocking: bool = True


@dataclass(frozen=True)
class EntityFacts:
    """What validation needs to know about an entity. WS-Federation entities have no SAML endpoints: list the remote
    entity's sign-out (or sign-out clean-up) URL as ``("slo", "", url)`` and its service URL as ``("acs", "", url)``
    (an RP) or ``("sso", "", url)`` (an IP), so the sign-out and https rules see them."""

    entity_id: str
    name: str
    base_url: str
    name_id_formats: tuple[str, ...]
    endpoints: tuple[tuple[str, str, str], ...]  # (EndpointKind value, binding URI, url)
    attributes: tuple[str, ...]


@dataclass(frozen=True)
class KeyFacts:
    alias: str
    kind: str  # "key_pair" | "trusted_certificate" | "trusted_ca"
    algorithm: str  # "RSA" | "EC"
    bits: int
    expired: bool


@dataclass(frozen=True)
class ValidationContext:
    kind: KindInfo
    local: EntityFacts | None
    remote: EntityFacts | None
    directories: tuple[tuple[str, str], ...]  # (name, "ldap" | "embedded")
    keys: dict[str, KeyFacts]
    authn_templates: frozenset[str]
    session_store_enabled: bool = True
