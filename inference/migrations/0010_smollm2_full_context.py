from django.db import migrations


def widen(apps, schema_editor):
    """SmolLM2 was trained for 8,192 tokens; the embedded worker now serves all of them. A window an
    operator changed from the seeded 2,048 is left as it is."""
    model = apps.get_model("inference", "LlmModel")
    model.objects.filter(id="smollm2-135m-instruct-q4_1", context_window=2048).update(context_window=8192)


def narrow(apps, schema_editor):
    model = apps.get_model("inference", "LlmModel")
    model.objects.filter(id="smollm2-135m-instruct-q4_1", context_window=8192).update(context_window=2048)


class Migration(migrations.Migration):
    dependencies = [("inference", "0009_owner_trust")]
    operations = [migrations.RunPython(widen, narrow)]
