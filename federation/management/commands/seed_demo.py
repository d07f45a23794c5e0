import os

from federation import demo
from federation.cli import FederationCommand


class Command(FederationCommand):
    help = (
        "Seed the demo loopback federation (local IdP and SP, two active partnerships, user 'demo') unless it exists. "
        "FEDERATION_DEMO=0 skips it; the demo password comes from FEDERATION_DEMO_PASSWORD or is generated and printed once."
    )

    def add_arguments(self, parser):
        bind = os.environ.get("FEDERATION_BIND", "127.0.0.1:8000")
        parser.add_argument("--base-url", default=os.environ.get("FEDERATION_DEMO_BASE_URL", f"http://{bind}"))

    def handle(self, *args, base_url, **options):
        if os.environ.get("FEDERATION_DEMO", "1") == "0":
            self.stdout.write("Demo federation skipped (FEDERATION_DEMO=0).")
            return
        generated = demo.seed(base_url, os.environ.get("FEDERATION_DEMO_PASSWORD"))
        if generated is None:
            self.stdout.write("Demo federation is ready.")
            return
        self.stdout.write(
            f"Seeded the demo federation at {base_url}: partnerships {demo.IDP_TO_SP} and {demo.SP_TO_IDP} are active."
        )
        if generated:
            self.stdout.write(self.style.WARNING(f"Demo user 'demo' has the password: {generated} (shown once)."))
        self.stdout.write(f"Try it: open {base_url.rstrip('/')}{demo.LANDING_PATH} and click Test SSO.")
