"""Base for the project's management commands: each runs under its own transaction ID and is
audited as 'cli:<os user>'. Errors end with a one-line reason and a non-zero exit (scripts rely on it)."""

import getpass
import sys

from django.core.management.base import BaseCommand, CommandError

from federation.audit import acting_as
from federation.tracing import transaction


class FederationCommand(BaseCommand):
    def execute(self, *args, **options):
        try:
            actor = f"cli:{getpass.getuser()}"
        except Exception:  # noqa: BLE001 - no passwd entry in some containers
            actor = "cli"
        with transaction(), acting_as(actor):
            return super().execute(*args, **options)

    def fail(self, message):
        """Stop with a one-line reason (exit status 1)."""
        raise CommandError(message)

    def run_from_argv(self, argv):
        try:
            super().run_from_argv(argv)
        except CommandError as exc:
            sys.stderr.write(f"error: {exc}\n")
            sys.exit(exc.returncode)
