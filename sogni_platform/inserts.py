"""INSERT of one new row with its statement built once per model.

`Model.save()` and `objects.create()` build the INSERT anew for every call, ~1 ms of CPU on the
machines this runs on; opening a job inserts three rows on every request's path. `insert` writes
the same row: every concrete field's `pre_save` and `get_db_prep_save`, the database's own values
(an auto primary key, `db_default`s) read back. No model here has save signals or overrides `save`;
one that does must not use this.
"""

import functools

from django.db import connection
from django.db.models import Model
from django.db.models.expressions import DatabaseDefault


@functools.cache
def _statement(model: type[Model], with_pk: bool) -> tuple[str, tuple, tuple]:
    meta = model._meta
    fields = tuple(f for f in meta.local_concrete_fields if not f.generated and (with_pk or f is not meta.auto_field))
    returning = tuple(meta.db_returning_fields)
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608 - names from model meta
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    if returning:
        sql += f" RETURNING {', '.join(quote(f.column) for f in returning)}"
    return sql, fields, returning


def insert(obj: Model) -> Model:
    """Insert `obj` (not saved before) as `obj.save(force_insert=True)` would, with the cached statement."""
    meta = obj._meta
    sql, fields, returning = _statement(type(obj), meta.auto_field is None or obj.pk is not None)
    values = []
    for field in fields:
        value = field.pre_save(obj, add=True)
        if isinstance(value, DatabaseDefault):
            raise ValueError(f"insert: {meta.label}.{field.name} has only a database default; use save()")
        values.append(field.get_db_prep_save(value, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone() if returning else ()
    for field, value in zip(returning, row, strict=True):
        for converter in field.get_db_converters(connection):
            value = converter(value, field, connection)
        setattr(obj, field.attname, value)
    obj._state.adding = False
    obj._state.db = connection.alias
    return obj
