"""`manage.py metadata_export --entity NAME [--out FILE] [--valid-days N] [--sign-with ALIAS] ...`
`manage.py metadata_export --partnership NAME [--out FILE] [--valid-days N] [--sign-with ALIAS] ...`

Writes SAML metadata to a file or standard output, signed when --sign-with names a key pair (--no-sign for an
unsigned file). Audited as 'cli:<user>'. Every error ends with one line on stderr ("error: ...") and exit status 1.

* Entity-level (`--entity`, entities.metadata_export): a local entity's metadata for a NEW partnership, whose name
  `--partnership` gives (it names the file); or a remote entity re-emitted as stored. Without --sign-with/--no-sign
  a local entity is signed with its own signing key.
* Partnership-level (`--partnership` without `--entity`, partnerships.metadata): the metadata of an EXISTING
  partnership's local entity with the partnership's values, in `<partnership name>-metadata.xml` when --out names a
  folder. Without --sign-with/--no-sign it is signed with the partnership's signing key (else its local entity's).
  While the partnership is Active only the validity, the signing key and --next-signing-key may be given.

The arguments and the action are plain functions (`add_export_arguments`, `run_export`) so that
`manage.py metadata export ...` can reuse them as a subcommand of the `metadata` command.
"""

import argparse
from datetime import timedelta
from pathlib import Path

from django.core.management.base import CommandError

from entities import metadata_export
from entities.metadata_export import MetadataExportError
from entities.models import Entity, KeystoreEntry
from federation.cli import FederationCommand


def _one_line_errors(parser):
    """Argument errors as a CommandError (one line, exit 1) instead of argparse's usage dump and exit 2."""

    def error(message):
        raise CommandError(f"{parser.prog}: {message}")

    parser.error = error
    return parser


def _flag(value):
    value = value.lower()
    if value not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, not '{value}'")
    return value == "true"


def add_export_arguments(parser):
    parser.add_argument(
        "--entity", metavar="NAME", default="", help="Entity name (local, or remote to re-emit it): entity-level export."
    )
    parser.add_argument(
        "--out", metavar="FILE", help="File to write ('-' or nothing = standard output); a folder gets <name>-metadata.xml."
    )
    parser.add_argument(
        "--partnership",
        metavar="NAME",
        default="",
        help="Without --entity: export this existing partnership (partnership-level). With --entity: the NEW partnership "
        "the entity's file is for (letters, digits, '_', '-', '.'); names nothing inside the file.",
    )
    parser.add_argument("--entity-id", default="", help="Publish this entityID instead of the entity's own (local entities).")
    parser.add_argument(
        "--valid-days", type=int, default=0, metavar="N", help="validUntil N days from now (0, the default: no validUntil)."
    )
    parser.add_argument("--cache-hours", type=int, metavar="N", help="cacheDuration of N hours (default: none).")
    signing = parser.add_mutually_exclusive_group()
    signing.add_argument(
        "--sign-with", metavar="ALIAS", help="Key pair that signs the file (default: a local entity's signing key)."
    )
    signing.add_argument("--no-sign", action="store_true", help="Write an unsigned file.")
    parser.add_argument(
        "--algorithm",
        choices=list(metadata_export.SIGNATURE_ALGORITHMS),
        help="Signature algorithm (default: rsa-sha256 for RSA keys, ecdsa-sha256 for EC keys; rsa-sha1 only for legacy partners).",
    )
    for flag in ("want-authn-requests-signed", "authn-requests-signed", "want-assertions-signed"):
        parser.add_argument(f"--{flag}", type=_flag, metavar="true|false", help=f"State {flag} in the role descriptor.")
    parser.add_argument(
        "--next-signing-key",
        metavar="ALIAS",
        help="Partnership-level: the key pair announced as next signing key (default: the local entity's; '' for none).",
    )
    return parser


def run_export(command, *, entity="", out=None, partnership="", entity_id="", valid_days=0, cache_hours=None, **options):
    """Export, write and audit; `command` is the running management command (for stdout/stderr)."""
    if not entity:
        if not partnership:
            raise CommandError("Name what to export: --entity NAME (an entity) or --partnership NAME (an existing partnership).")
        return run_partnership_export(
            command,
            partnership=partnership,
            out=out,
            entity_id=entity_id,
            valid_days=valid_days,
            cache_hours=cache_hours,
            **options,
        )
    if options.get("next_signing_key") is not None:
        raise CommandError("--next-signing-key applies to a partnership export (--partnership NAME without --entity).")
    found = Entity.objects.filter(name__iexact=entity).first()
    if found is None:
        raise CommandError(f"No entity is named '{entity}'.")
    sign_with = _signer(options, found.signing_key if found.is_local and found.signing_key_id else None, "the entity's")
    _check_cache_hours(cache_hours)
    if not found.is_local and (partnership or entity_id):
        raise CommandError("--partnership and --entity-id apply to local entities; a remote entity is re-emitted as stored.")
    overrides = {}
    for name in ("want_authn_requests_signed", "authn_requests_signed", "want_assertions_signed"):
        if options.get(name) is not None:
            overrides[name] = options[name]
    try:
        result = metadata_export.export_entity_metadata(
            found,
            metadata_export.ExportOptions(
                partnership_name=partnership,
                entity_id=entity_id,
                valid_days=valid_days,
                cache_duration=timedelta(hours=cache_hours) if cache_hours else None,
                sign_with=sign_with,
                algorithm=options.get("algorithm") or "",
                overrides=overrides,
            ),
        )
    except MetadataExportError as exc:
        raise CommandError(exc.message) from None
    _write(command, result, out, f"metadata of '{found.name}'")
    metadata_export.audit_export(found, result, "cli")
    return result


def _signer(options, default, whose):
    """The key pair that signs the file: --sign-with ALIAS, none with --no-sign, else `default` (may be None)."""
    sign_with = default
    if options.get("sign_with"):
        sign_with = KeystoreEntry.objects.filter(alias=options["sign_with"]).first()
        if sign_with is None:
            raise CommandError(f"No keystore entry has the alias '{options['sign_with']}'.")
    elif options.get("no_sign"):
        sign_with = None
    if options.get("algorithm") and sign_with is None:
        raise CommandError(f"--algorithm needs a signing key: use --sign-with ALIAS (or set {whose} signing key).")
    return sign_with


def _check_cache_hours(cache_hours):
    if cache_hours is not None and cache_hours <= 0:
        raise CommandError("--cache-hours must be a positive number of hours.")


def _write(command, result, out, what):
    """The document to `out` (a file, a folder: <name>-metadata.xml in it, or standard output), one line on stderr
    saying what was written when it goes to a file."""
    if out and out != "-":
        target = Path(out) / result.filename if Path(out).is_dir() else Path(out)
        try:
            target.write_bytes(result.xml)
        except OSError as exc:
            raise CommandError(f"{exc.strerror or exc}: {out}") from None
        how = f"signed with '{result.signed_with}' ({result.algorithm})" if result.signed_with else "unsigned"
        command.stderr.write(f"{what} ({result.entity_id}) written to {target}, {how}")
    else:
        command.stdout.write(result.xml.decode("utf-8"), ending="")


def run_partnership_export(command, *, partnership, out=None, entity_id="", valid_days=0, cache_hours=None, **options):
    """Partnership-level export (partnerships.metadata): the existing partnership's local entity with its values."""
    from partnerships import metadata as partnership_metadata
    from partnerships.models import Partnership

    found = Partnership.objects.select_related("local_entity").filter(name__iexact=partnership).first()
    if found is None:
        raise CommandError(f"No partnership is named '{partnership}'.")
    alias = partnership_metadata.default_document_signer(found)
    default = KeystoreEntry.objects.filter(alias=alias).first() if alias else None
    sign_with = _signer(options, default, "the partnership's")
    _check_cache_hours(cache_hours)
    overrides = {name: options[name] for name in partnership_metadata.SIGNING_FLAGS if options.get(name) is not None}
    try:
        result = partnership_metadata.export_partnership_metadata(
            found,
            metadata_export.ExportOptions(
                entity_id=entity_id,
                valid_days=valid_days,
                cache_duration=timedelta(hours=cache_hours) if cache_hours else None,
                sign_with=sign_with,
                algorithm=options.get("algorithm") or "",
                overrides=overrides,
            ),
            next_signing_alias=options.get("next_signing_key"),
        )
    except MetadataExportError as exc:
        raise CommandError(exc.message) from None
    _write(command, result, out, f"metadata of partnership '{found.name}'")
    metadata_export.audit_export(found, result, "cli")
    return result


class Command(FederationCommand):
    help = (
        "Export the SAML metadata of an entity (--entity) or of an existing partnership (--partnership), signed with a "
        "chosen key pair (RSA-SHA256 by default)."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        return _one_line_errors(super().create_parser(prog_name, subcommand, **kwargs))

    def add_arguments(self, parser):
        add_export_arguments(parser)

    def handle(self, *args, **options):
        run_export(self, **options)
