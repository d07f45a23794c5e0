"""`manage.py directory list | test NAME | find NAME SPEC VALUE [--attribute A]... [--groups]`

For scripts and troubleshooting: the same service calls the runtime makes (federation.directories).
`test` and `find` exit with status 1 and a one-line reason when the directory fails.
"""

from federation import directories
from federation.cli import FederationCommand
from federation.models import UserDirectory


class Command(FederationCommand):
    help = "List user directories, test a directory's connection, or look a user up with a search spec."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="List the directories.")
        test = sub.add_parser("test", help="Bind with the configured credentials and list a few entries.")
        test.add_argument("name")
        find = sub.add_parser("find", help="Find one user with a search spec such as '(mail=%%s)' or 'email=%%s'.")
        find.add_argument("name")
        find.add_argument("spec")
        find.add_argument("value")
        find.add_argument("--attribute", "-a", action="append", default=[], help="Attribute to print (repeatable).")
        find.add_argument("--groups", action="store_true", help="Also print the user's groups.")

    def handle(self, *args, **options):
        action = options["action"]
        if action == "list":
            for directory in UserDirectory.objects.all():
                where = ", ".join(directory.server_labels()) if not directory.is_embedded else "-"
                self.stdout.write(f"{directory.name}\t{directory.kind}\t{where}")
            return
        directory = self._directory(options["name"])
        if action == "test":
            report = directories.test_connection(directory)
            if not report.ok:
                self.fail(report.message)
            self.stdout.write(report.message)
            for dn, _attrs in report.entries:
                self.stdout.write(f"  {dn}")
            return
        try:
            user = directories.find_user(directory, options["spec"], options["value"])
            if user is None:
                self.fail(f"No user of {directory.name} matches {options['spec'].replace('%s', options['value'])}.")
            self.stdout.write(f"{user.identifier}\t(login {user.login})")
            if options["attribute"]:
                for name, values in directories.attributes(directory, user, options["attribute"]).items():
                    self.stdout.write(f"  {name}: {' | '.join(values) if values else '(none)'}")
            if options["groups"]:
                for group in directories.groups(directory, user):
                    self.stdout.write(f"  group: {group.name} ({group.dn})")
        except directories.DirectoryError as exc:
            self.fail(exc.message)

    def _directory(self, name):
        try:
            return UserDirectory.objects.get(name=name)
        except UserDirectory.DoesNotExist:
            names = ", ".join(UserDirectory.objects.values_list("name", flat=True)) or "none"
            self.fail(f"No directory named {name!r} (there are: {names}).")
