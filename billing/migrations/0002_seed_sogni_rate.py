from decimal import Decimal

from django.db import migrations


def seed(apps, schema_editor):
    # A placeholder rate so SOGNI pricing works out of the box; operators set the real one in the admin.
    SogniRate = apps.get_model("billing", "SogniRate")
    if not SogniRate.objects.exists():
        SogniRate.objects.create(usd_per_sogni=Decimal("0.01"), note="placeholder seeded by migration")


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
