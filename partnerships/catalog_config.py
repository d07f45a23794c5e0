"""Looking up the catalogue for one partnership kind, its defaults, visibility, and `normalize`: the type coercion and
shape check of a whole configuration as it comes from a form or a config file.

A configuration is ``{step key: {setting key: value, table key: [row dicts]}}``. Values are JSON-friendly: bool, int
(or None for an empty optional number), str, and lists of str for multichoice settings.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from partnerships.catalog_schema import KINDS, TEXT_TYPES, KindInfo, Problem, Setting, StepSpec, TableSpec
from partnerships.catalog_steps import STEPS


def kind(key) -> KindInfo:
    """The kind with this key; KeyError naming the six valid keys otherwise."""
    try:
        return KINDS[key]
    except (KeyError, TypeError):
        valid = ", ".join(KINDS)
        raise KeyError(f"Unknown partnership kind {key!r}: expected one of {valid}.") from None


def _info(kind_or_key) -> KindInfo:
    return kind_or_key if isinstance(kind_or_key, KindInfo) else kind(kind_or_key)


def steps_for(kind_key) -> list[StepSpec]:
    """The wizard steps of this kind, in order (Confirm is the wizard's own)."""
    info = _info(kind_key)
    return [step for step in STEPS if step.applies(info)]


def step_for(kind_key, step_key) -> StepSpec:
    for step in steps_for(kind_key):
        if step.key == step_key:
            return step
    info = _info(kind_key)
    raise KeyError(f"A {info.label} partnership has no step {step_key!r}.")


def settings_for(kind_key, step_key) -> list[Setting]:
    """The settings of one step that exist for this kind (whether they are shown depends on values: see `visible`)."""
    info = _info(kind_key)
    return [setting for setting in step_for(info, step_key).settings if setting.applies(info)]


def tables_for(kind_key, step_key) -> list[TableSpec]:
    info = _info(kind_key)
    return [table for table in step_for(info, step_key).tables if table.applies(info)]


def columns_for(kind_key, table: TableSpec) -> list[Setting]:
    """A table's columns for this kind (e.g. SAML 1.1 attributes have a namespace column, SAML 2.0 a name format)."""
    info = _info(kind_key)
    return [column for column in table.columns if column.applies(info)]


def default_value(setting: Setting):
    """The setting's default, as a fresh value (lists are copied), with the empty value of its type when it has none."""
    if setting.type == "multichoice":
        return list(setting.default or ())
    if setting.default is not None:
        return copy.deepcopy(setting.default)
    if setting.type == "bool":
        return False
    if setting.type == "int":
        return None
    return ""


def default_row(kind_key, table: TableSpec) -> dict:
    return {column.key: default_value(column) for column in columns_for(kind_key, table)}


def defaults(kind_key) -> dict:
    """``{step: {setting: default, table: []}}`` for every step of this kind."""
    info = _info(kind_key)
    result = {}
    for step in steps_for(info):
        values = {setting.key: default_value(setting) for setting in settings_for(info, step.key)}
        for table in tables_for(info, step.key):
            values[table.key] = []  # tables start empty (no federation-user rows = all users)
        result[step.key] = values
    return result


# Sections of the SSO step that only work with the session store (ch01-08 F3.1, ch15-20 A1): the wizard hides them,
# with catalog_steps.SESSION_STORE_NOTE, while the site's session store is off; `validate` refuses them switched on.
SESSION_STORE_SECTIONS = frozenset({"SLO", "Sign-out"})


def requires_session_store(step_key: str, setting_or_table) -> bool:
    """Whether this setting or table belongs to a section that needs the session store (hidden while it is off)."""
    return step_key == "sso_slo" and setting_or_table.section in SESSION_STORE_SECTIONS


def visible(setting_or_table, step_values: Mapping) -> bool:
    """Whether a setting or table is shown, given the other values of its step."""
    condition = setting_or_table.visible_when
    return True if condition is None else bool(condition(step_values))


# --- coercion ------------------------------------------------------------------------------------------------------

_TRUE = ("1", "true", "on", "yes", "y")
_FALSE = ("0", "false", "off", "no", "n", "")


class _Invalid(ValueError):
    pass


def _type_words(setting: Setting) -> str:
    if setting.type == "bool":
        return "must be true or false"
    if setting.type == "int":
        return "must be a whole number"
    if setting.type == "multichoice":
        return "must be a list of choices"
    return "must be text"


def coerce(setting: Setting, value):
    """The value in its stored type, or `_Invalid` with a plain message. Form strings are accepted for every type."""
    kind_ = setting.type
    if kind_ == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise _Invalid(_type_words(setting))
    if kind_ == "int":
        if value is None:
            return None
        if isinstance(value, bool):
            raise _Invalid(_type_words(setting))
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return None
            if text.lstrip("+-").isdigit():
                return int(text)
            raise _Invalid(f"must be a whole number (not “{text}”)")
        raise _Invalid(_type_words(setting))
    if kind_ == "multichoice":
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            raise _Invalid(_type_words(setting))
        result = []
        for item in value:
            if not isinstance(item, str):
                raise _Invalid(_type_words(setting))
            if item not in setting.choice_values:
                raise _Invalid(f"has an unknown choice “{item}”: expected {_choice_list(setting)}")
            if item not in result:
                result.append(item)
        return result
    if kind_ == "choice":
        if value is None:
            return ""
        if not isinstance(value, str):
            raise _Invalid(_type_words(setting))
        value = value.strip()
        if value and value not in setting.choice_values:
            raise _Invalid(f"has an unknown choice “{value}”: expected {_choice_list(setting)}")
        return value
    if kind_ in TEXT_TYPES:
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _Invalid(_type_words(setting))
        text = str(value)
        # Free text keeps its inner spacing (expressions count spaces); URLs, names and aliases are trimmed.
        return text if kind_ in ("textarea", "expression", "password") else text.strip()
    raise _Invalid(_type_words(setting))  # pragma: no cover - Setting.__post_init__ refuses other types


def _choice_list(setting: Setting) -> str:
    values = setting.choice_values
    return ", ".join(f"“{v}”" for v in values[:-1]) + (" or " if len(values) > 1 else "") + f"“{values[-1]}”"


def normalize(kind_key, config) -> tuple[dict, list[Problem]]:
    """Coerce and shape-check a whole configuration for this kind.

    Unknown steps, keys and columns, wrong types and values of settings that do not apply to this kind are Problems
    naming them; missing keys take their defaults. The result has every key of every step of the kind; a value that
    could not be used is replaced by its default (the Problem says so)."""
    info = _info(kind_key)
    problems: list[Problem] = []
    result = defaults(info)
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        return result, [Problem("", "", "The configuration must be a mapping of steps to their settings.")]
    all_step_keys = {step.key for step in STEPS}
    for step_key, values in config.items():
        if step_key not in result:
            if step_key in all_step_keys:
                message = f"The step “{step_key}” does not apply to a {info.label} partnership."
            else:
                message = f"Unknown step “{step_key}”."
            problems.append(Problem(str(step_key), "", message))
            continue
        if values is None:
            continue
        if not isinstance(values, Mapping):
            problems.append(Problem(step_key, "", "The settings of a step must be a mapping of names to values."))
            continue
        problems.extend(_normalize_step(info, step_key, values, result[step_key]))
    return result, problems


def _all_setting_keys(step_key: str) -> tuple[set[str], set[str]]:
    settings, tables = set(), set()
    for step in STEPS:
        if step.key == step_key:
            settings |= {setting.key for setting in step.settings}
            tables |= {table.key for table in step.tables}
    return settings, tables


def _normalize_step(info: KindInfo, step_key: str, values: Mapping, out: dict) -> list[Problem]:
    problems = []
    settings = {setting.key: setting for setting in settings_for(info, step_key)}
    tables = {table.key: table for table in tables_for(info, step_key)}
    known_settings, known_tables = _all_setting_keys(step_key)
    for key, value in values.items():
        if key in settings:
            setting = settings[key]
            try:
                out[key] = coerce(setting, value)
            except _Invalid as exc:
                problems.append(Problem(step_key, key, f"{setting.label} {exc}."))
        elif key in tables:
            out[key] = _normalize_rows(info, step_key, tables[key], value, problems)
        elif key in known_settings or key in known_tables:
            problems.append(Problem(step_key, str(key), f"“{key}” does not apply to a {info.label} partnership."))
        else:
            problems.append(Problem(step_key, str(key), f"Unknown field “{key}”."))
    return problems


def _normalize_rows(info: KindInfo, step_key: str, table: TableSpec, rows, problems: list[Problem]) -> list[dict]:
    if rows is None:
        return []
    if not isinstance(rows, list | tuple):
        problems.append(Problem(step_key, table.key, f"{table.label} must be a list of rows."))
        return []
    columns = {column.key: column for column in columns_for(info, table)}
    known = {column.key for column in table.columns}
    result = []
    for index, row in enumerate(rows):
        where = f"{table.key}.{index}"
        if not isinstance(row, Mapping):
            problems.append(Problem(step_key, where, f"Row {index + 1} of {table.label} must be a mapping of columns to values."))
            continue
        out = default_row(info, table)
        for key, value in row.items():
            if key in columns:
                try:
                    out[key] = coerce(columns[key], value)
                except _Invalid as exc:
                    problems.append(Problem(step_key, f"{where}.{key}", f"{columns[key].label} {exc}."))
            elif key in known:
                problems.append(
                    Problem(step_key, f"{where}.{key}", f"The column “{key}” does not apply to a {info.label} partnership.")
                )
            else:
                problems.append(Problem(step_key, f"{where}.{key}", f"Unknown column “{key}” in {table.label}."))
        result.append(out)
    return result
