"""`manage.py metadata ACTION ...`: SAML metadata import, inspection and refresh for scripts.

    metadata import FILE_OR_URL [--entity-id ID] [--name NAME]
                    [--operation create-remote|update-remote|create-local] [--entity-type TYPE]
                    [--target NAME] [--base-url URL]
                    [--trust-anchor ALIAS | --allow-unsigned] [--cert-alias ALIAS ...] [--no-certificates]
                    [--max-size MB] [--timeout SECONDS] [--refresh-hours HOURS]
                    [--all-sps | --all-idps | --all-entities] [--match REGEX] [--registration-authority URI] [--no-update]
    metadata show FILE_OR_URL [--trust-anchor ALIAS | --allow-unsigned] [--entity-id ID] [--json]
    metadata refresh [--source URL_OR_ID] [--force]

Every error ends the command with exit status 1 and one line on stderr ("error: ..."). Reading an
aggregate shows a progress line on stderr (updated in place on a terminal, a line every 10 %
otherwise).

    metadata export --entity NAME ...   (entities/management/commands/metadata_export.py)

Other subcommands plug in through `EXTRA_ACTIONS` below: action name → (module, function adding
its arguments to a subparser, function running it as `run(command, **options)`). An action whose
module cannot be imported is simply not offered. `export` is registered this way, reusing the
arguments and the action of the `metadata_export` command.
"""

import importlib
import json
import os
import sys
import time
from datetime import timedelta

from django.core.management.base import CommandError

from entities import metadata_import as mi
from entities.metadata_parser import format_bytes
from entities.models import EntityType, MetadataSource
from federation.cli import FederationCommand

# action name → (module, add-arguments function, run function)
EXTRA_ACTIONS = {
    "export": ("entities.management.commands.metadata_export", "add_export_arguments", "run_export"),
}


def _one_line_errors(parser):
    def error(message):
        raise CommandError(f"{parser.prog}: {message}")

    parser.error = error
    return parser


def _extra_action(spec):
    """(module, add arguments, run) of an EXTRA_ACTIONS entry, or None when it is not available."""
    module_name, add_name, run_name = spec
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    add, run = getattr(module, add_name, None), getattr(module, run_name, None)
    if add is None or run is None:
        return None
    return module, add, run


class Progress:
    """A progress line on stderr: rewritten in place on a terminal, a line every 10 % otherwise."""

    def __init__(self, stream, total_bytes=None):
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.total_bytes = total_bytes
        self.last_step = -1
        self.last_time = 0.0
        self.shown = False

    def _show(self, text, step):
        if self.tty:
            now = time.monotonic()
            if now - self.last_time < 0.2 and step < 10:
                return
            self.last_time = now
            self.stream.write(f"\r{text}\033[K")
            self.stream.flush()
            self.shown = True
        elif step > self.last_step:
            self.last_step = step
            self.stream.write(text + "\n")

    def bytes(self, done, entities):
        if self.total_bytes:
            percent = min(100, int(100 * done / self.total_bytes))
            self._show(
                f"reading: {percent:3d}% ({format_bytes(done)} of {format_bytes(self.total_bytes)}, {entities} entities)",
                percent // 10,
            )
        else:
            self._show(f"reading: {format_bytes(done)}, {entities} entities", done // (10 * 1024 * 1024))

    def phase(self, phase, done, total):
        if phase == "verify":
            self.bytes(done, 0)
            return
        percent = int(100 * done / total) if total else 100
        self.last_step = -1 if done == 0 else self.last_step
        self._show(f"importing: {percent:3d}% ({done} of {total} entities)", 100 + percent // 10)

    def end(self):
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()


class Command(FederationCommand):
    help = "Import SAML metadata (files, URLs, aggregates), show what a document holds, refresh URL sources."

    def create_parser(self, prog_name, subcommand, **kwargs):
        return _one_line_errors(super().create_parser(prog_name, subcommand, **kwargs))

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def action(name, help_text):
            return _one_line_errors(actions.add_parser(name, help=help_text, description=help_text))

        imp = action("import", "Import one entity (or, with --all-sps/--all-idps, every matching one) from a file or URL.")
        imp.add_argument("source", metavar="FILE_OR_URL")
        imp.add_argument("--entity-id", help="The entity to import (needed when the document holds several).")
        imp.add_argument("--name", default="", help="Entity name of the new entity (default: derived from the entity ID).")
        imp.add_argument("--operation", choices=list(mi.OPERATIONS), default=mi.CREATE_REMOTE)
        imp.add_argument("--entity-type", choices=EntityType.values, help="When the entity has several roles.")
        imp.add_argument(
            "--target", help="update-remote: the entity name to update (default: the remote entity with the entity ID)."
        )
        imp.add_argument("--base-url", default="", help="create-local: the base URL (default: from the metadata's URLs).")
        self._trust_options(imp)
        imp.add_argument(
            "--cert-alias",
            action="append",
            default=None,
            metavar="ALIAS",
            help="Alias for each certificate in the order `metadata show` lists them; '-' skips one. "
            "Default: every valid certificate, as <name>-<usage>.",
        )
        imp.add_argument("--no-certificates", action="store_true", help="Import no certificate.")
        imp.add_argument("--refresh-hours", type=float, help="URL sources: refresh automatically every N hours.")
        bulk = imp.add_mutually_exclusive_group()
        bulk.add_argument("--all-sps", action="store_true", help="Bulk: every SAML 2.0 SP of the aggregate (with --match).")
        bulk.add_argument("--all-idps", action="store_true", help="Bulk: every SAML 2.0 IdP of the aggregate (with --match).")
        bulk.add_argument("--all-entities", action="store_true", help="Bulk: every SAML 2.0 SP and IdP of the aggregate.")
        imp.add_argument("--match", default="", metavar="REGEX", help="Bulk: only entity IDs this regular expression finds.")
        imp.add_argument("--registration-authority", default="", help="Bulk: only entities registered by this authority.")
        imp.add_argument(
            "--no-update", action="store_true", help="Bulk: skip entities that already exist (default: update them)."
        )

        show = action("show", "List the entities of a document (and one entity's certificates with --entity-id).")
        show.add_argument("source", metavar="FILE_OR_URL")
        show.add_argument("--entity-id")
        self._trust_options(show)
        show.add_argument("--json", dest="as_json", action="store_true")

        refresh = action("refresh", "Refresh URL metadata sources now: every due one, or --source.")
        refresh.add_argument("--source", help="URL or id of one source (refreshed even when not due).")
        refresh.add_argument("--force", action="store_true", help="Ignore ETag/Last-Modified (fetch the whole document).")

        self.extra = {}
        for name, spec in EXTRA_ACTIONS.items():
            found = _extra_action(spec)
            if found is not None:
                module, add, run = found
                add(action(name, (module.__doc__ or name).strip().splitlines()[0].strip("`")))
                self.extra[name] = run

    @staticmethod
    def _trust_options(parser):
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            "--trust-anchor", metavar="ALIAS", help="Keystore entry (trusted certificate or CA) the signature is verified with."
        )
        group.add_argument("--allow-unsigned", action="store_true", help="Accept metadata without a (checked) signature.")
        parser.add_argument(
            "--max-size", type=float, default=100, metavar="MB", help="Refuse documents larger than this (default 100 MB)."
        )
        parser.add_argument("--timeout", type=float, default=30, metavar="SECONDS", help="URL download timeout (default 30 s).")

    def handle(self, *args, action, **options):
        if action in getattr(self, "extra", {}):
            self.extra[action](self, **options)
            return
        try:
            getattr(self, "do_" + action)(**options)
        except mi.MetadataImportError as exc:
            self.fail(exc.message)

    # -- helpers

    def _source(self, options):
        if options["max_size"] <= 0:
            raise mi.MetadataImportError("--max-size must be positive.")
        return mi.Source.parse(options["source"], max_bytes=int(options["max_size"] * 1024 * 1024), timeout=options["timeout"])

    def _check_trust(self, options):
        if not options.get("trust_anchor") and not options.get("allow_unsigned"):
            raise mi.MetadataImportError("Give --trust-anchor ALIAS to verify the signature, or --allow-unsigned.")

    def _progress(self, source):
        size = os.path.getsize(source.path) if source.path and os.path.isfile(source.path) else None
        return Progress(getattr(self.stderr, "_out", sys.stderr), size)

    # -- actions

    def do_import(
        self, source, entity_id, name, operation, entity_type, target, base_url, trust_anchor, allow_unsigned, **options
    ):
        src = self._source({"source": source, **options})
        self._check_trust({"trust_anchor": trust_anchor, "allow_unsigned": allow_unsigned})
        refresh = timedelta(hours=options["refresh_hours"]) if options.get("refresh_hours") else None
        progress = self._progress(src)
        if options["all_sps"] or options["all_idps"] or options["all_entities"]:
            role = "sp" if options["all_sps"] else ("idp" if options["all_idps"] else "all")
            bulk_filter = mi.BulkFilter(role, options["match"], options["registration_authority"])
            try:
                result = mi.bulk_import(
                    src,
                    bulk_filter,
                    trust_entry=mi.KeystoreEntry.objects.filter(alias=trust_anchor).first() if trust_anchor else None,
                    trust=mi.trust_anchor(trust_anchor) if trust_anchor else None,
                    allow_unsigned=allow_unsigned,
                    update_existing=not options["no_update"],
                    refresh_interval=refresh,
                    progress=progress.phase,
                )
            finally:
                progress.end()
            self.stdout.write(f"bulk import from {src.name}: {result.line()}")
            for error in result.errors:
                where = f"entity #{error['position']}" + (f" (line {error['line']})" if error.get("line") else "")
                self.stdout.write(f"  {where} {error['entity_id'] or '(no entity ID)'}: {error['message']}")
            return
        if options["match"] or options["registration_authority"] or options["no_update"]:
            raise mi.MetadataImportError(
                "--match, --registration-authority and --no-update go with --all-sps, --all-idps or --all-entities."
            )
        aliases = None
        if options["no_certificates"]:
            aliases = {}
        elif options["cert_alias"]:
            aliases = {number: alias for number, alias in enumerate(options["cert_alias"], start=1) if alias != "-"}
        try:
            entity, plan, info = mi.import_entity(
                src,
                operation=operation,
                entity_id=entity_id,
                entity_type=entity_type,
                name=name,
                target=target,
                base_url=base_url,
                trust_alias=trust_anchor,
                allow_unsigned=allow_unsigned,
                certificate_aliases=aliases,
                refresh_interval=refresh,
                progress=progress.bytes,
            )
        finally:
            progress.end()
        verb = "updated" if operation == mi.UPDATE_REMOTE else "created"
        self.stdout.write(f"{verb} {entity.type_label} '{entity.name}' (entity ID {entity.entity_id}) from {src.name}")
        self.stdout.write(
            f"signature: {'verified (' + info.verified_with + ')' if info.verified else 'not checked (unsigned allowed)'}"
        )
        for choice in plan.certificates:
            reused = " (already in the keystore)" if choice.existing is not None else ""
            self.stdout.write(f"certificate {choice.alias}: {choice.usage}, issued to {choice.issued_to}{reused}")
        for note in plan.notes:
            self.stdout.write(f"note: {note}")

    def do_show(self, source, entity_id, trust_anchor, allow_unsigned, as_json, **options):
        src = self._source({"source": source, **options})
        self._check_trust({"trust_anchor": trust_anchor, "allow_unsigned": allow_unsigned})
        progress = self._progress(src)
        try:
            scan = mi.scan_source(
                src,
                trust=mi.trust_anchor(trust_anchor) if trust_anchor else None,
                allow_unsigned=allow_unsigned,
                keep=(lambda data: data.entity_id == entity_id) if entity_id else None,
                progress=progress.bytes,
            )
        finally:
            progress.end()
        if as_json:
            self.stdout.write(
                json.dumps({"document": scan.info.summary(), "entities": [e.to_json() for e in scan.entities]}, indent=2)
            )
            return
        info = scan.info
        signature = "verified" if info.verified else ("signed, not checked" if info.signed else "unsigned")
        self.stdout.write(
            f"{info.root} {info.name or ''}: {info.entity_count} entities, {info.malformed_count} malformed, {signature}"
        )
        for data in scan.entities:
            state = "malformed" if data.problems else ("expired" if data.expired() else "ok")
            types = ",".join(data.entity_types()) or "-"
            self.stdout.write(f"{data.position:6d}  {state:9s}  {types:30s}  {data.entity_id}")
            if entity_id:
                for entity_type in data.entity_types():
                    for row in mi.certificate_rows(data, entity_type):
                        status = row.problem or "valid"
                        self.stdout.write(
                            f"        {entity_type} certificate #{row.number}: {row.usage}, issued to {row.issued_to}, {status}"
                        )
                for problem in data.problems:
                    self.stdout.write(f"        problem: {problem}")

    def do_refresh(self, source, force, **options):
        if source:
            row = MetadataSource.objects.filter(pk=source).first() if source.isdigit() else None
            row = row or MetadataSource.objects.filter(kind=MetadataSource.Kind.URL, location=source).first()
            if row is None:
                raise mi.MetadataImportError(f"No URL metadata source is '{source}'.")
            result = mi.refresh_source(row, force=force)
            self.stdout.write(f"{row.location}: {result.line()}")
            if result.failed:
                raise mi.MetadataImportError(f"refresh of {row.location} failed: {'; '.join(result.errors)}")
            return
        started = mi.refresh_due_sources()
        self.stdout.write(f"{len(started)} source(s) refreshed")
        for row in MetadataSource.objects.filter(pk__in=started):
            self.stdout.write(f"{row.location}: {'failed: ' + row.last_error if row.last_error else 'ok'}")
