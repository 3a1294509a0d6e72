"""`sogni_abort(reason)`: a statement that must undo its own writes raises it (SQLSTATE SG001).

A chat request's job opens in one statement (inference.services.opening); when its worker slot was
claimed but its hold could not be written, the statement fails with this and writes nothing.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION sogni_abort(reason text) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = reason, ERRCODE = 'SG001';
END
$$
"""


def _on_postgresql(sql: str):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return apply


class Migration(migrations.Migration):
    dependencies = [("inference", "0006_worker_hot_updates")]

    operations = [
        migrations.RunPython(_on_postgresql(CREATE), _on_postgresql("DROP FUNCTION IF EXISTS sogni_abort(text)")),
    ]
