"""`manage.py fedconfig export|apply`: the whole configuration of a deployment as one document, for backup and for
promotion between environments (docs/config-format.md; docs/partnerships.md, "Command line").

    fedconfig export [--output FILE] [--format json|yaml] [--include-secrets] [--include-private-keys]
                     [--password-file FILE | --password-env NAME]
    fedconfig apply FILE [--dry-run] [--format json|yaml] [--password-file FILE | --password-env NAME]

`apply` checks the whole file first and writes all of it in one transaction, or nothing; `--dry-run` prints the
differences. Exit status: 0 done, 1 refused (each problem on its own stderr line, with its path), 2 usage mistakes.
"""

from federation.cli import FederationCommand
from partnerships import config_io
from partnerships.management import config_cli


class Command(FederationCommand):
    help = "Export the whole federation configuration, or apply a configuration file (all or nothing)."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        text = "Export keystore, directories, templates, entities and partnerships as one document."
        config_cli.add_export_options(actions.add_parser("export", help=text, description=text))
        text = "Check a configuration file, then apply all of it in one transaction (or nothing)."
        config_cli.add_apply_options(actions.add_parser("apply", help=text, description=text))

    def handle(self, *args, action, **options):
        if action == "export":
            config_cli.run_export(self, config_io.export_deployment, options)
        else:
            config_cli.run_apply(self, options)
