import os

from federation.cli import FederationCommand
from federation.services import create_administrator


class Command(FederationCommand):
    help = "Create the first console administrator if it does not exist (password from FEDERATION_ADMIN_PASSWORD or generated and printed once)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("FEDERATION_ADMIN_USER", "admin"))

    def handle(self, *args, username, **options):
        user, generated = create_administrator(username, os.environ.get("FEDERATION_ADMIN_PASSWORD"))
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created administrator '{username}' with password: {generated}\n"
                    "This password is shown once; change it after signing in."
                )
            )
        else:
            self.stdout.write(f"Administrator '{user.get_username()}' is ready.")
