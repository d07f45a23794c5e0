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
            try:
                return super().execute(*args, **options)
            except CommandError as exc:
                # Django's run_from_argv would print "CommandError: …"; scripts get the documented "error: …".
                if not getattr(self, "_from_argv", False) or options.get("traceback"):
                    raise
                sys.stderr.write(f"error: {exc}\n")
                sys.exit(exc.returncode)

    def fail(self, message):
        """Stop with a one-line reason (exit status 1)."""
        raise CommandError(message)

    def run_from_argv(self, argv):
        self._from_argv = True
        try:
            super().run_from_argv(argv)
        except CommandError as exc:
            sys.stderr.write(f"error: {exc}\n")
            sys.exit(exc.returncode)
