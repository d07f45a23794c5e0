"""What `manage.py partnership export|import` and `manage.py fedconfig export|apply` share: their options, reading the
password, writing the document, printing the plan and the problems (docs/partnerships.md, "Command line").

Exit status: 0 done, 1 refused (every problem on its own stderr line, with its path in the file), 2 usage mistakes.
"""

import os
import sys
from pathlib import Path

from django.core.management.base import CommandError

from partnerships import config_io
from partnerships.config_io import ConfigError


def usage_error(message):
    return CommandError(message, returncode=2)


def add_password_options(parser, purpose):
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--password-file",
        metavar="FILE",
        help=f"File holding the password {purpose} (its first line; at least {config_io.MIN_PASSWORD_LENGTH} characters).",
    )
    group.add_argument("--password-env", metavar="NAME", help="Name of an environment variable holding that password.")


def add_export_options(parser):
    parser.add_argument(
        "--output", "-o", metavar="FILE", help="Write to FILE (.json, or .yaml/.yml for YAML) instead of standard output."
    )
    parser.add_argument(
        "--format",
        dest="file_format",
        choices=["json", "yaml"],
        help="json or yaml (default: from the --output name, else json).",
    )
    parser.add_argument(
        "--include-secrets",
        action="store_true",
        help="Add password settings and LDAP bind passwords, encrypted with the password (otherwise they are left out).",
    )
    parser.add_argument(
        "--include-private-keys",
        action="store_true",
        help="Add the private keys of key pairs as PKCS#12 protected by the password (otherwise only certificates).",
    )
    add_password_options(parser, "that protects secrets and private keys")


def add_apply_options(parser):
    parser.add_argument(
        "file", metavar="FILE", help="The document (JSON, or YAML when the name ends in .yaml/.yml); '-' reads stdin."
    )
    parser.add_argument("--dry-run", action="store_true", help="Check the file and print what would change; write nothing.")
    parser.add_argument(
        "--format", dest="file_format", choices=["json", "yaml"], help="How to read the file (default: from its name, else json)."
    )
    add_password_options(parser, "the file was exported with (needed when it holds secrets or private keys)")


def read_password(options):
    if options.get("password_env"):
        name = options["password_env"]
        if name not in os.environ:
            raise CommandError(f"The environment variable {name} (from --password-env) is not set.")
        return os.environ[name]
    if options.get("password_file"):
        try:
            text = Path(options["password_file"]).read_text()
        except OSError as exc:
            raise CommandError(f"Cannot read the password file {options['password_file']}: {exc.strerror or exc}.") from None
        return text.splitlines()[0] if text.splitlines() else ""
    return None


def refuse(command, problems, where=""):
    """Exit status 1 with every problem on its own stderr line (a single problem that is not about a file is just
    the error message)."""
    if len(problems) == 1 and not where:
        raise CommandError(problems[0])
    for problem in problems:
        command.stderr.write(f"{where}: {problem}" if where else str(problem))
    what = f"{where} was refused" if where else "refused"
    raise CommandError(f"{what}: {len(problems)} problem(s); nothing was changed.")


def run_export(command, make_document, options):
    include_secrets, include_keys = options["include_secrets"], options["include_private_keys"]
    password = read_password(options)
    if (include_secrets or include_keys) and password is None:
        raise usage_error(
            "--include-secrets and --include-private-keys need the password that protects them: "
            "--password-file FILE or --password-env NAME."
        )
    try:
        document = make_document(include_secrets=include_secrets, include_private_keys=include_keys, password=password)
    except ConfigError as exc:
        refuse(command, exc.messages())
    output = options.get("output")
    fmt = options.get("file_format") or ("yaml" if config_io.is_yaml(output) else "json")
    text = config_io.dump(document, fmt=fmt)
    counts = ", ".join(f"{len(document[s])} {s.replace('_', ' ')}" for s in config_io.SECTIONS)
    if output and output != "-":
        # Secrets and keys are encrypted, but the file is still only for its owner.
        mode = 0o600 if include_secrets or include_keys else 0o644
        descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        command.stderr.write(f"wrote {output}: {counts}")
    else:
        command.stdout.write(text, ending="")


def run_apply(command, options):
    file = options["file"]
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise CommandError(f"Cannot read {file}: {exc.strerror or exc}.") from None
    try:
        document = config_io.load(data, "" if file == "-" else file, options.get("file_format"))
        changes = config_io.apply(document, dry_run=options["dry_run"], password=read_password(options))
    except ConfigError as exc:
        refuse(command, exc.messages(), "standard input" if file == "-" else file)
    verbose = options.get("verbosity", 1) >= 2
    for change in changes:
        if change.action != "unchanged" or change.notes or verbose:
            for line in change.lines():
                command.stdout.write(line)
    if options["dry_run"]:
        command.stdout.write(f"dry run: {config_io.summary(changes)}; nothing was written.")
    else:
        command.stdout.write(f"applied: {config_io.summary(changes, applied=True)}.")
