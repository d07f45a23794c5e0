from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("federation", "0006_audit_lifecycle_actions"),
    ]

    operations = [
        migrations.CreateModel(
            name="SloTransaction",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("key", models.CharField(help_text="Random identifier of the logout.", max_length=64, unique=True)),
                ("role", models.CharField(choices=[("idp", "Identity provider"), ("sp", "Service provider")], max_length=8)),
                ("saml_id", models.CharField(blank=True, help_text="SAML transaction ID for the trace.", max_length=128)),
                ("waiting_for", models.CharField(blank=True, db_index=True, max_length=128)),
                (
                    "partnership",
                    models.CharField(blank=True, help_text="The partnership the logout started from.", max_length=128),
                ),
                ("data", models.JSONField(blank=True, default=dict)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("expires_at", models.DateTimeField(db_index=True)),
            ],
        ),
    ]
