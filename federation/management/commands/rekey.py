from django.db import transaction

from federation import audit
from federation.cli import FederationCommand
from federation.secretbox import is_current, seal, sealed_fields, unseal


class Command(FederationCommand):
    help = (
        "Re-encrypt every secret at rest under the current FEDERATION_KEY_ENCRYPTION_SECRET. "
        "Put the previous secret(s) in FEDERATION_KEY_ENCRYPTION_OLD_SECRETS while this runs."
    )

    def handle(self, *args, **options):
        counts = {}
        with transaction.atomic():
            for model, field in sealed_fields():
                n = 0
                for pk, value in model.objects.exclude(**{field: ""}).values_list("pk", field):
                    if is_current(value):
                        continue
                    # update() skips the audit signals: the plaintext did not change, only its wrapping.
                    model.objects.filter(pk=pk).update(**{field: seal(unseal(value))})
                    n += 1
                counts[f"{model._meta.label}.{field}"] = n
            total = sum(counts.values())
            audit.record(
                "other",
                object_type="secretbox",
                object_repr="key-encryption secret",
                summary=f"re-encrypted {total} secrets under the current key-encryption secret",
            )
        for name, n in counts.items():
            self.stdout.write(f"{name}: {n} re-encrypted")
        self.stdout.write(f"done: {total} secrets now sealed under the current secret")
