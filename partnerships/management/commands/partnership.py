"""`manage.py partnership ACTION ...`: partnerships for scripts and automation (docs/partnerships.md, "Command line").

    partnership list [--state S] [--kind K] [--search Q] [--json]
    partnership show NAME [--json]
    partnership activate NAME | deactivate NAME | get-updates NAME
    partnership delete NAME [--yes]
    partnership export NAME... [--output FILE] [--format json|yaml] [--include-secrets] [--include-private-keys]
                       [--password-file FILE | --password-env NAME]
    partnership import FILE [--dry-run] [--password-file FILE | --password-env NAME]

Thin over partnerships.services and partnerships.config_io. Exit status: 0 done, 1 refused (each problem on its own
stderr line), 2 usage mistakes.
"""

import json
import sys

from federation.cli import FederationCommand
from partnerships import catalog, config_io, services
from partnerships.management import config_cli
from partnerships.models import PartnershipState
from partnerships.services import PartnershipError


def _problem_line(problem):
    where = ".".join(part for part in (problem.step, problem.field) if part)
    return f"{where}: {problem.message}" if where else problem.message


class Command(FederationCommand):
    help = "Partnerships: list, show, activate, deactivate, delete, get entity updates, export and import."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def action(name, help_text):
            return actions.add_parser(name, help=help_text, description=help_text)

        listing = action("list", "List partnerships (name order), optionally filtered.")
        listing.add_argument("--state", choices=PartnershipState.values)
        listing.add_argument("--kind", choices=list(catalog.KINDS))
        listing.add_argument("--search", metavar="Q", help="Part of the name, description or an entity ID.")
        listing.add_argument("--json", dest="as_json", action="store_true", help="JSON instead of a table.")

        show = action("show", "Show one partnership: state, entities, directories, problems and settings.")
        show.add_argument("name", metavar="NAME")
        show.add_argument("--json", dest="as_json", action="store_true", help="The partnership as the config format holds it.")

        for name, text in (
            ("activate", "Validate and activate a Defined or Inactive partnership (freezes a new snapshot)."),
            ("deactivate", "Deactivate an Active partnership (the runtime stops serving it)."),
            ("get-updates", "Copy the entities' current data into the partnership (not while it is Active)."),
        ):
            action(name, text).add_argument("name", metavar="NAME")

        delete = action("delete", "Delete a partnership that is not Active.")
        delete.add_argument("name", metavar="NAME")
        delete.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")

        export = action("export", "Export partnerships with the entities, keys, templates and directories they need.")
        export.add_argument("names", metavar="NAME", nargs="+")
        config_cli.add_export_options(export)

        imp = action("import", "Apply a configuration file (as `fedconfig apply`): all of it, or nothing.")
        config_cli.add_apply_options(imp)

    def handle(self, *args, action, **options):
        try:
            getattr(self, "do_" + action.replace("-", "_"))(**options)
        except PartnershipError as exc:
            config_cli.refuse(self, [_problem_line(p) for p in exc.problems])

    # -- actions

    def do_list(self, state, kind, search, as_json, **_):
        rows = [
            {
                "name": p.name,
                "kind": p.kind,
                "state": p.state,
                "local_entity": p.local_entity.name,
                "remote_entity": p.remote_entity.name if p.remote_entity_id else None,
                "description": p.description,
            }
            for p in services.partnership_queryset(state=state or "", kind=kind or "", search=search or "")
        ]
        if as_json:
            self.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False))
            return
        if not rows:
            self.stdout.write("No partnerships match." if state or kind or search else "There are no partnerships.")
            return
        table = [["NAME", "TYPE", "STATE", "LOCAL", "REMOTE"]]
        table += [[r["name"], r["kind"], r["state"], r["local_entity"], r["remote_entity"] or "—"] for r in rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
        for line in table:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1])

    def do_show(self, name, as_json, **_):
        partnership = services.find_partnership(name)
        if as_json:
            data = config_io.partnership_data(partnership)
            data["state"] = partnership.state
            self.stdout.write(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))
            return
        info = partnership.kind_info
        snapshot = partnership.current_snapshot()
        state = partnership.get_state_display()
        if snapshot is not None:
            state += (
                f", snapshot v{snapshot.version} of {snapshot.created_at:%Y-%m-%d %H:%M} UTC (sha256 {snapshot.digest[:16]}…)"
            )
        remote = partnership.remote_entity
        lines = [
            ("name", partnership.name),
            ("type", f"{info.label} ({partnership.kind})"),
            ("state", state),
            ("description", partnership.description or "—"),
            ("local entity", f"{partnership.local_entity.name} ({partnership.local_entity.entity_id})"),
            ("remote entity", f"{remote.name} ({remote.entity_id})" if remote else "— (put off)"),
            ("directories", ", ".join(services.directory_names(partnership)) or "—"),
        ]
        changes = services.entity_changes(partnership)
        lines.append(("entity updates", f"{len(changes)} waiting (run get-updates)" if changes else "none"))
        width = max(len(label) for label, _ in lines)
        for label, value in lines:
            self.stdout.write(f"{label + ':':<{width + 2}}{value}")
        problems = services.stored_problems(partnership)
        if problems:
            self.stdout.write("problems:")
            for problem in problems:
                self.stdout.write(f"  {_problem_line(problem)}")
        self.stdout.write("settings:")
        secrets = services.read_secrets(partnership)
        for step in catalog.steps_for(partnership.kind):
            values = (partnership.settings or {}).get(step.key) or {}
            for setting in catalog.settings_for(partnership.kind, step.key):
                if not catalog.visible(setting, values):
                    continue
                value = values.get(setting.key)
                if setting.type == "password":
                    shown = "(set)" if secrets.get(f"{step.key}.{setting.key}") else "(empty)"
                else:
                    shown = json.dumps(value, ensure_ascii=False)
                self.stdout.write(f"  {step.key}.{setting.key} = {shown}")
            for table in catalog.tables_for(partnership.kind, step.key):
                if not catalog.visible(table, values):
                    continue
                for number, row in enumerate(values.get(table.key) or []):
                    self.stdout.write(
                        f"  {step.key}.{table.key}[{number}] = {json.dumps(row, ensure_ascii=False, sort_keys=True)}"
                    )

    def do_activate(self, name, **_):
        snapshot = services.activate(services.find_partnership(name))
        self.stdout.write(
            f'activated "{snapshot.partnership.name}": snapshot v{snapshot.version} (sha256 {snapshot.digest[:16]}…)'
        )

    def do_deactivate(self, name, **_):
        partnership = services.deactivate(services.find_partnership(name))
        self.stdout.write(f'deactivated "{partnership.name}": the runtime no longer serves it')

    def do_get_updates(self, name, **_):
        partnership = services.find_partnership(name)
        if not services.entity_changes(partnership):
            self.stdout.write(f'"{partnership.name}" already has its entities\' current data')
            return
        for side, field, _old, _new in services.get_updates(partnership):
            self.stdout.write(f"{side} entity {field}: updated")
        partnership.refresh_from_db()
        self.stdout.write(f'"{partnership.name}" is now {partnership.get_state_display()}')

    def do_delete(self, name, yes, **_):
        partnership = services.find_partnership(name)
        if not yes:
            if not sys.stdin.isatty():
                self.fail(f'Not deleted: add --yes to delete "{partnership.name}" without a question.')
            answer = input(f'Delete partnership "{partnership.name}"? Type its name to confirm: ')
            if answer.strip() != partnership.name:
                self.fail("Not deleted: the name typed does not match.")
        services.delete_partnership(partnership)
        self.stdout.write(f'deleted "{partnership.name}"')

    def do_export(self, names, **options):
        partnerships = [services.find_partnership(name) for name in dict.fromkeys(names)]
        config_cli.run_export(self, lambda **kw: config_io.export_partnerships(partnerships, **kw), options)

    def do_import(self, **options):
        config_cli.run_apply(self, options)
