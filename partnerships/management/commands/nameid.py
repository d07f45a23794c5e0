"""`manage.py nameid ACTION ...`: name-ID management jobs for scripts (docs/name-id-management.md, "Command line").

    nameid terminate --type sp|idp --provider ENTITY_ID (--user-dn DN | --user NAME) [--directory D]
                     [--idempotency-key K] [--wait SECONDS] [--json]
    nameid change    ... the same ... [--new-id ID]
    nameid status JOB_ID [--json]
    nameid list [--state S] [--provider P] [--user U] [--limit N] [--json]
    nameid resume                      queue again what a dead worker or a lost message left behind
    nameid run JOB_ID                  one attempt now, in this process (no worker needed)

Thin over partnerships.name_id_jobs. Exit status: 0 done (with --wait: the job COMPLETED), 1 refused or FAILED (or
still pending when --wait ran out), 2 usage mistakes.
"""

import json
import time

from django.utils import timezone

from federation.cli import FederationCommand
from partnerships import name_id_jobs
from partnerships.models import NameIdJob


class Command(FederationCommand):
    help = "Name-ID management jobs: end or change a user's federation with a partner, follow and resume jobs."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def action(name, help_text):
            return actions.add_parser(name, help=help_text, description=help_text)

        for name, text in (
            ("terminate", "Queue a job that ends the user's federation with the partner (ManageNameID Terminate)."),
            ("change", "Queue a job that gives the user's link with the partner a new identifier (ManageNameID NewID)."),
        ):
            sub = action(name, text)
            sub.add_argument(
                "--type",
                dest="operation_type",
                required=True,
                choices=["sp", "idp"],
                help="sp: our IdP ends it with an SP; idp: our SP with an IdP.",
            )
            sub.add_argument("--provider", required=True, metavar="ENTITY_ID", help="The partner's entity ID (ProviderID).")
            who = sub.add_mutually_exclusive_group(required=True)
            who.add_argument("--user-dn", metavar="DN", help="The user's LDAP DN (or user name in the embedded directory).")
            who.add_argument("--user", metavar="NAME", help="The user's login name, looked up in the partnership's directories.")
            sub.add_argument("--directory", default="", help="Only this directory of the partnership.")
            sub.add_argument(
                "--idempotency-key", default="", metavar="KEY", help="Submitting the same key again returns the same job."
            )
            if name == "change":
                sub.add_argument("--new-id", default="", metavar="ID", help="The new identifier; empty makes a random one.")
            sub.add_argument(
                "--wait", type=float, default=0, metavar="SECONDS", help="Wait for the outcome (a worker runs the job)."
            )
            sub.add_argument("--json", dest="as_json", action="store_true", help="Print the job as the API shows it.")

        status = action("status", "Show one job: state, attempts, last error, notification.")
        status.add_argument("job_id", metavar="JOB_ID")
        status.add_argument("--json", dest="as_json", action="store_true")

        listing = action("list", "List jobs, newest first.")
        listing.add_argument("--state", choices=NameIdJob.State.values)
        listing.add_argument("--provider", default="", help="Part of the partner's entity ID.")
        listing.add_argument("--user", default="", help="Part of the user DN or name.")
        listing.add_argument("--limit", type=int, default=50)
        listing.add_argument("--json", dest="as_json", action="store_true")

        action("resume", "Queue again the jobs a dead worker or a lost message left behind (beat does this every minute).")
        run = action("run", "Run one attempt of a job now, in this process (for installations without a worker).")
        run.add_argument("job_id", metavar="JOB_ID")

    def handle(self, *args, action, **options):
        getattr(self, "do_" + action)(**options)

    # -- actions

    def _submit(self, operation, operation_type, provider, user_dn, user, directory, idempotency_key, wait, as_json, new_id=""):
        item = {
            "Operation": operation,
            "OperationType": operation_type,
            "ProviderID": provider,
            "UserDN": user_dn,
            "UserName": user,
            "Directory": directory or None,
            "NewID": new_id or None,
            "IdempotencyKey": idempotency_key or None,
        }
        try:
            request = name_id_jobs.parse_job_request({key: value for key, value in item.items() if value is not None})
            [(job, created)] = name_id_jobs.submit_jobs([request], actor=f"cli:{self._actor()}")
        except name_id_jobs.JobError as error:
            self.fail(f"{error.field}: {error}" if error.field else str(error))
        if not as_json:
            self.stdout.write(f"{'queued' if created else 'already queued'} job {job.uuid}")
        if wait:
            job = self._wait(job, wait)
        self._show(job, as_json, brief=not as_json)
        if wait and job.state != NameIdJob.State.COMPLETED:
            self.fail(f"job {job.uuid} is {job.state}" + (f": {job.last_error}" if job.last_error else ""))

    def do_terminate(self, **options):
        self._submit("terminate", **self._options(options))

    def do_change(self, **options):
        self._submit("change", new_id=options.get("new_id") or "", **self._options(options))

    @staticmethod
    def _options(options):
        names = ("operation_type", "provider", "user_dn", "user", "directory", "idempotency_key", "wait", "as_json")
        return {name: options.get(name) for name in names}

    def _actor(self):
        import getpass

        try:
            return getpass.getuser()
        except Exception:  # noqa: BLE001 - no passwd entry in some containers
            return "unknown"

    def _wait(self, job, seconds):
        deadline = time.monotonic() + seconds
        while job.state == NameIdJob.State.PENDING and time.monotonic() < deadline:
            time.sleep(0.5)
            job.refresh_from_db()
        return job

    def _job(self, job_id):
        try:
            found = NameIdJob.objects.filter(uuid=job_id).first()
        except Exception:  # noqa: BLE001 - not a UUID
            found = None
        if found is None:
            self.fail(f"there is no name-ID job {job_id}")
        return found

    def _show(self, job, as_json, brief=False):
        if as_json:
            self.stdout.write(json.dumps(name_id_jobs.job_document(job), indent=2))
            return
        line = f"{job.state}  {job.operation} {job.user_label} with {job.provider_id}  attempts {job.attempts}/{job.max_attempts}"
        self.stdout.write(line)
        if job.last_error:
            self.stdout.write(f"last error: {job.last_error}")
        if not brief:
            self.stdout.write(f"partnership: {job.partnership_name}")
            self.stdout.write(
                f"notification: {job.get_notification_state_display()}"
                + (f" ({job.notification_error})" if job.notification_error else "")
            )
            for attempt in job.attempt_log.all():
                self.stdout.write(
                    f"  {attempt.kind} #{attempt.number} {attempt.started_at:%Y-%m-%d %H:%M:%S} {attempt.outcome}"
                    + (f" {attempt.status}" if attempt.status else "")
                    + (f": {attempt.detail}" if attempt.detail else "")
                )

    def do_status(self, job_id, as_json, **_):
        self._show(self._job(job_id), as_json)

    def do_list(self, state, provider, user, limit, as_json, **_):
        jobs = list(name_id_jobs.job_queryset(state=state or "", provider=provider, user=user)[: max(1, limit)])
        if as_json:
            self.stdout.write(json.dumps([name_id_jobs.job_document(job) for job in jobs], indent=2))
            return
        if not jobs:
            self.stdout.write("no name-ID jobs")
        for job in jobs:
            self.stdout.write(
                f"{job.uuid}  {job.created_at:%Y-%m-%d %H:%M}  {job.state:<9}  {job.operation:<9}  {job.user_label}  {job.provider_id}"
                f"  {job.attempts}/{job.max_attempts}"
            )

    def do_resume(self, **_):
        self.stdout.write(f"queued {name_id_jobs.resume_jobs()} jobs again")

    def do_run(self, job_id, **_):
        job = self._job(job_id)
        if job.state == NameIdJob.State.PENDING:
            # "Now" means now: a retry waiting for its interval is made due (a job held by a live worker stays held).
            NameIdJob.objects.filter(pk=job.pk, state=NameIdJob.State.PENDING).update(next_attempt_at=timezone.now())
            outcome = name_id_jobs.process_job(job.pk)
        else:
            outcome = name_id_jobs.notify_job(job.pk)
        job.refresh_from_db()
        self._show(job, False, brief=True)
        if outcome.skipped:
            self.stdout.write(f"nothing done: {outcome.detail}")
