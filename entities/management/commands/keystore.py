"""`manage.py keystore ACTION --alias ...`: the keystore for scripts and automation.

Every error ends the command with exit status 1 and one line on stderr ("error: ..."), including
mistakes in the arguments. Passwords can come from an environment variable (--password-env) so
they stay off the command line and out of shell history.
"""

import getpass
import json
import os
import sys
from pathlib import Path

from django.core.management.base import CommandError

from entities import services
from entities.keystore import ALGORITHMS, KeystoreError
from entities.models import KeystoreEntry
from federation.cli import FederationCommand

IMPORT_KINDS = {"key-pair": "key_pair", "trusted": "trusted_certificate", "ca": "trusted_ca"}


def _one_line_errors(parser):
    """Argument errors as a CommandError (one line, exit 1) instead of argparse's usage dump and exit 2."""

    def error(message):
        raise CommandError(f"{parser.prog}: {message}")

    parser.error = error
    return parser


class Command(FederationCommand):
    help = "Manage the keystore: generate key pairs, make CSRs, import and export certificates and keys, list, delete."

    def create_parser(self, prog_name, subcommand, **kwargs):
        return _one_line_errors(super().create_parser(prog_name, subcommand, **kwargs))

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def action(name, help_text):
            sub = _one_line_errors(actions.add_parser(name, help=help_text, description=help_text))
            return sub

        generate = action("generate", "Generate a key pair with a self-signed certificate.")
        generate.add_argument("--alias", required=True)
        generate.add_argument("--algorithm", choices=list(ALGORITHMS), default="rsa2048")
        generate.add_argument("--subject", required=True, help='Subject DN, e.g. "CN=idp.example.org,O=Example".')
        generate.add_argument("--days", type=int, default=365, help="Validity of the self-signed certificate (days).")
        generate.add_argument(
            "--san", action="append", default=[], help="Subject alternative name (DNS name, URI, IP); repeat or comma-separate."
        )

        csr = action("csr", "Create a certificate signing request for a key pair (printed, or written to --out).")
        csr.add_argument("--alias", required=True)
        csr.add_argument("--subject", help="Subject DN of the request (default: the certificate's subject).")
        csr.add_argument("--san", action="append", default=None, help="Subject alternative names (default: the certificate's).")
        csr.add_argument("--out", help="File to write the CSR to (default: standard output).")

        imp = action("import", "Import a key pair (PEM or PKCS#12), a trusted certificate or a trusted CA chain.")
        imp.add_argument("--alias", required=True)
        imp.add_argument("--file", required=True, help="File to import ('-' reads standard input).")
        imp.add_argument("--kind", choices=list(IMPORT_KINDS), default="key-pair")
        self._password_options(imp, "Password of the PKCS#12 file or of the encrypted PEM key.")

        signed = action("import-signed", "Import the CA-signed certificate of a key pair (from the CSR).")
        signed.add_argument("--alias", required=True)
        signed.add_argument("--file", required=True, help="Certificate file: PEM (may include the chain), DER or PKCS#7.")

        export = action("export", "Export a certificate (PEM/DER) or, deliberately, a key pair as PKCS#12.")
        export.add_argument("--alias", required=True)
        export.add_argument("--format", dest="export_format", choices=["pem", "der", "pkcs12"], default="pem")
        export.add_argument("--out", help="File to write; '-' or nothing = standard output (binary formats need a file or '-').")
        self._password_options(export, "Password protecting the PKCS#12 file (at least 8 characters).")

        listing = action("list", "List the keystore entries.")
        listing.add_argument("--kind", choices=list(IMPORT_KINDS))
        listing.add_argument("--json", dest="as_json", action="store_true", help="JSON instead of a table.")

        delete = action("delete", "Delete a keystore entry.")
        delete.add_argument("--alias", required=True)

    @staticmethod
    def _password_options(parser, help_text):
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--password", help=help_text + " Prefer --password-env in scripts.")
        group.add_argument("--password-env", metavar="NAME", help="Name of an environment variable holding the password.")

    def handle(self, *args, action, **options):
        handler = getattr(self, "do_" + action.replace("-", "_"))
        try:
            handler(**options)
        except KeystoreError as exc:
            self.fail(exc.message)
        except OSError as exc:
            self.fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))

    # -- actions

    def do_generate(self, alias, algorithm, subject, days, san, **_):
        entry = services.generate_key_pair(alias, algorithm, subject, days, san)
        self.stdout.write(
            f"generated key pair '{entry.alias}': {entry.key_description}, {entry.subject}, not after {entry.not_after:%Y-%m-%d}"
        )
        self.stdout.write(f"SHA-256 fingerprint {entry.fingerprint_sha256}")

    def do_csr(self, alias, subject, san, out, **_):
        pem = services.create_csr(alias, subject, san)
        if out and out != "-":
            Path(out).write_text(pem)
            self.stderr.write(f"CSR for '{alias}' written to {out}")
        else:
            self.stdout.write(pem, ending="")

    def do_import(self, alias, file, kind, **options):
        data = self._read(file)
        kind = IMPORT_KINDS[kind]
        if kind == "key_pair":
            entries = [services.import_key_pair(alias, data, self._password(options, required=False))]
        elif kind == "trusted_certificate":
            entries = [services.import_trusted_certificate(alias, data)]
        else:
            entries = services.import_trusted_ca_chain(alias, data)
        for entry in entries:
            self.stdout.write(f"imported {entry.get_kind_display().lower()} '{entry.alias}': {entry.subject}")

    def do_import_signed(self, alias, file, **_):
        entry = services.import_signed_certificate(alias, self._read(file))
        self.stdout.write(
            f"imported the CA-signed certificate of '{alias}': issuer {entry.issuer}, not after {entry.not_after:%Y-%m-%d}"
        )

    def do_export(self, alias, export_format, out, **options):
        if export_format == "pkcs12":
            data = services.export_pkcs12(alias, self._password(options, required=True, confirm=True))
        else:
            data = services.export_certificate(alias, export_format)
        if out and out != "-":
            path = Path(out)
            path.write_bytes(data)
            if export_format == "pkcs12":
                path.chmod(0o600)  # it holds the private key
            self.stderr.write(f"{export_format.upper()} of '{alias}' written to {out}")
        elif export_format == "pem":
            self.stdout.write(data.decode(), ending="")
        elif out == "-":
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            self.fail(f"{export_format.upper()} is binary: give --out FILE (or --out - to write it to standard output).")

    def do_list(self, kind, as_json, **_):
        entries = KeystoreEntry.objects.order_by("alias")
        if kind:
            entries = entries.filter(kind=IMPORT_KINDS[kind])
        rows = [
            {
                "alias": e.alias,
                "kind": e.kind,
                "key": e.key_description,
                "has_private_key": e.has_private_key,
                "subject": e.subject,
                "issuer": e.issuer,
                "serial_number": e.serial_number,
                "not_before": e.not_before.isoformat(),
                "not_after": e.not_after.isoformat(),
                "days_left": e.days_left(),
                "level": str(e.expiry_level()),
                "fingerprint_sha256": e.fingerprint_sha256,
                "has_csr": bool(e.csr_pem),
            }
            for e in entries
        ]
        if as_json:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("The keystore is empty.")
            return
        columns = [("ALIAS", "alias"), ("KIND", "kind"), ("KEY", "key"), ("NOT AFTER", "not_after"), ("DAYS", "days_left")]
        columns += [("LEVEL", "level"), ("SUBJECT", "subject")]
        table = [[title for title, _ in columns]]
        for row in rows:
            table.append([str(row[key])[:10] if key == "not_after" else str(row[key]) for _, key in columns])
        widths = [max(len(line[i]) for line in table) for i in range(len(columns) - 1)]
        for line in table:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1])

    def do_delete(self, alias, **_):
        services.delete_entry(alias)
        self.stdout.write(f"deleted '{alias}'")

    # -- helpers

    def _read(self, file):
        if file == "-":
            return sys.stdin.buffer.read()
        return Path(file).read_bytes()

    def _password(self, options, required, confirm=False):
        if options.get("password_env"):
            name = options["password_env"]
            if name not in os.environ:
                self.fail(f"The environment variable {name} (from --password-env) is not set.")
            return os.environ[name]
        if options.get("password"):
            return options["password"]
        if required:
            if not sys.stdin.isatty():
                self.fail("Give the password with --password-env NAME (or --password).")
            password = getpass.getpass("Password: ")
            if confirm and getpass.getpass("Password again: ") != password:
                self.fail("The two passwords differ.")
            return password
        return None
