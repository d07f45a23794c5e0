"""Every installation has one embedded directory (the Django user table), so a fresh install can
authenticate users without any LDAP server."""

from django.db import migrations

EMBEDDED_NAME = "Embedded directory"


def create_embedded_directory(apps, schema_editor):
    UserDirectory = apps.get_model("federation", "UserDirectory")
    if not UserDirectory.objects.filter(kind="embedded").exists():
        name = EMBEDDED_NAME
        if UserDirectory.objects.filter(name=name).exists():
            name = f"{EMBEDDED_NAME} (users of this installation)"
        # bulk_create sends no signals: installing is not a configuration change for the audit log.
        UserDirectory.objects.bulk_create(
            [
                UserDirectory(
                    name=name,
                    kind="embedded",
                    description="This installation's own users, groups and extra attributes.",
                )
            ]
        )


def remove_embedded_directory(apps, schema_editor):
    apps.get_model("federation", "UserDirectory").objects.filter(kind="embedded").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("federation", "0002_directory_validation_and_help"),
    ]

    operations = [
        migrations.RunPython(create_embedded_directory, remove_embedded_directory),
    ]
