from django.db import migrations

from inference.catalog import catalog_seed

def seed(apps, schema_editor):
    catalog_seed(apps.get_model("inference", "LlmModel"))


class Migration(migrations.Migration):
    dependencies = [("inference", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
