"""`manage.py opencookie decode VALUE | encode --property NAME=VALUE… [--attribute NAME=VALUE…]`

For application developers and administrators: read an open-format cookie the SP runtime set (or make one to test an
application with), with federation.opencookie. The password never goes on the command line (process lists show it):

    --password-env VAR       read it from the environment variable VAR (default FEDERATION_OPENCOOKIE_PASSWORD)
    --password-file FILE     read the first line of FILE
    --partnership NAME       use the cookie password of an active partnership (the administrator's shortcut)

Without any of them the password is asked for on the terminal. `decode` prints one `name: value` line per property
and per attribute (several values joined with " | "), or JSON with --json; an unreadable cookie ends with
`error: …` and exit status 1. VALUE `-` reads the cookie from standard input.
"""

import getpass
import json
import os
import sys

from federation import opencookie
from federation.cli import FederationCommand

DEFAULT_ENV = "FEDERATION_OPENCOOKIE_PASSWORD"


class Command(FederationCommand):
    help = "Decode (or encode, for tests) an open-format cookie of the SP runtime."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        decode = sub.add_parser("decode", help="Decrypt and print a cookie value.")
        decode.add_argument("value", help="The cookie value, or - to read it from standard input.")
        decode.add_argument("--json", action="store_true", help="Print JSON: {version, properties, attributes}.")
        encode = sub.add_parser("encode", help="Make a cookie value (to test an application).")
        encode.add_argument("--property", "-p", action="append", default=[], metavar="NAME=VALUE", help="Repeatable.")
        encode.add_argument(
            "--attribute", "-a", action="append", default=[], metavar="NAME=VALUE", help="Repeatable; repeat a name for values."
        )
        encode.add_argument("--algorithm", default="aes256-gcm", choices=sorted(opencookie.ALGORITHMS))
        for command in (decode, encode):
            source = command.add_mutually_exclusive_group()
            source.add_argument(
                "--password-env", metavar="VAR", help=f"Environment variable holding the password (default {DEFAULT_ENV})."
            )
            source.add_argument("--password-file", metavar="FILE", help="File whose first line is the password.")
            source.add_argument("--partnership", metavar="NAME", help="Use this active partnership's cookie password.")

    def handle(self, *args, **options):
        password = self._password(options)
        if options["action"] == "decode":
            value = sys.stdin.read() if options["value"] == "-" else options["value"]
            try:
                cookie = opencookie.decode(value.strip(), password)
            except opencookie.OpenCookieError as error:
                self.fail(str(error))
            if options["json"]:
                self.stdout.write(
                    json.dumps(
                        {"version": cookie.version, "properties": cookie.properties, "attributes": cookie.attributes},
                        ensure_ascii=False,
                    )
                )
                return
            self.stdout.write(f"Version: {cookie.version}")
            for name, value in cookie.properties.items():
                self.stdout.write(f"{name}: {value}")
            for name, values in cookie.attributes.items():
                self.stdout.write(f"{name}: {' | '.join(values)}")
            return
        properties = dict(self._pairs(options["property"], "--property"))
        attributes = {}
        for name, value in self._pairs(options["attribute"], "--attribute"):
            attributes.setdefault(name, []).append(value)
        if not properties:
            self.fail("give at least one --property, such as --property NameID=alice")
        try:
            self.stdout.write(opencookie.encode(properties, attributes, password, options["algorithm"]))
        except opencookie.OpenCookieError as error:
            self.fail(str(error))

    def _pairs(self, items, option):
        for item in items:
            name, separator, value = item.partition("=")
            if not separator or not name:
                self.fail(f"{option} takes NAME=VALUE, not {item!r}")
            yield name, value

    def _password(self, options):
        if options.get("partnership"):
            from partnerships.models import PartnershipSnapshot
            from partnerships.runtime import snapshot_secrets

            snapshot = PartnershipSnapshot.objects.filter(partnership__name=options["partnership"], current=True).first()
            if snapshot is None:
                self.fail(f"no active partnership is named {options['partnership']!r}")
            password = snapshot_secrets(snapshot.pk).get("application.cookie_password")
            if not password:
                self.fail(f"partnership {options['partnership']!r} has no open-format cookie password")
            return password
        if options.get("password_file"):
            try:
                with open(options["password_file"], encoding="utf-8") as handle:
                    password = handle.readline().rstrip("\r\n")
            except OSError as error:
                self.fail(f"cannot read {options['password_file']}: {error.strerror}")
        elif options.get("password_env") or os.environ.get(DEFAULT_ENV):
            name = options.get("password_env") or DEFAULT_ENV
            password = os.environ.get(name, "")
            if not password:
                self.fail(f"the environment variable {name} is empty or not set")
        elif sys.stdin.isatty():
            password = getpass.getpass("Cookie password: ")
        else:
            self.fail(f"give the password with --password-env, --password-file or --partnership (or set {DEFAULT_ENV})")
        if not password:
            self.fail("the password is empty")
        return password
