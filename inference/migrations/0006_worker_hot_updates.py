"""Worker rows change on every claim and release: keep those updates heap-only (HOT).

No index holds `in_flight` any more, and on PostgreSQL the table leaves half of each page free, so an
update can stay on its page; PostgreSQL then prunes the old versions as it reads the page, without
waiting for a vacuum, and the dispatch query does not wade through dead index entries.
"""

from django.db import migrations, models


def _fillfactor(value: int):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            table = schema_editor.quote_name(apps.get_model("inference", "Worker")._meta.db_table)
            schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {value})")

    return apply


class Migration(migrations.Migration):
    dependencies = [("inference", "0005_job_queued_at")]

    operations = [
        migrations.RemoveIndex(model_name="worker", name="inference_worker_status_load"),
        migrations.AddIndex(model_name="worker", index=models.Index(fields=["status"], name="inference_worker_status")),
        migrations.RunPython(_fillfactor(50), _fillfactor(100)),
    ]
