"""INSERT and UPDATE of rows with their statements built once per model (and field list).

`Model.save()` and `objects.create()` build the statement anew for every call, ~1 ms of CPU on the
machines this runs on; opening and settling a job write a dozen rows on every request's path. These
write the same rows: every written field's `pre_save` and `get_db_prep_save`, the database's own
values (an auto primary key, `db_default`s) read back after an insert. No model here has save signals
or overrides `save`; one that does must not use this.
"""

import functools
from collections.abc import Sequence

from django.db import connection
from django.db.models import Model
from django.db.models.expressions import DatabaseDefault


def _written_fields(meta, with_pk: bool) -> tuple:
    """The fields an INSERT writes: every concrete one but generated columns (and an auto key not set)."""
    return tuple(f for f in meta.local_concrete_fields if not f.generated and (with_pk or f is not meta.auto_field))


def _insert_value(obj: Model, field):
    """`field` of new `obj` as the INSERT sends it, as Model.save prepares it."""
    value = field.pre_save(obj, add=True)
    if isinstance(value, DatabaseDefault):
        raise ValueError(f"insert: {obj._meta.label}.{field.name} has only a database default; use save()")
    return field.get_db_prep_save(value, connection)


@functools.cache
def _insert_statement(model: type[Model], with_pk: bool, rows: int) -> tuple[str, tuple, tuple]:
    meta = model._meta
    fields = _written_fields(meta, with_pk)
    returning = tuple(meta.db_returning_fields)
    quote = connection.ops.quote_name
    values = f"({', '.join(['%s'] * len(fields))})"
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608 - names from model meta
        f"VALUES {', '.join([values] * rows)}"
    )
    if returning:
        sql += f" RETURNING {', '.join(quote(f.column) for f in returning)}"
    return sql, fields, returning


def insert(obj: Model) -> Model:
    """Insert `obj` (not saved before) as `obj.save(force_insert=True)` would, with the cached statement."""
    insert_many([obj])
    return obj


def insert_many(objs: Sequence[Model]) -> None:
    """Insert new instances of one model in one statement (PostgreSQL returns the rows in VALUES order)."""
    if not objs:
        return
    model, meta = type(objs[0]), objs[0]._meta
    with_pk = meta.auto_field is None or objs[0].pk is not None
    sql, fields, returning = _insert_statement(model, with_pk, len(objs))
    values = []
    for obj in objs:
        if type(obj) is not model or (meta.auto_field is None or obj.pk is not None) != with_pk:
            raise ValueError("insert_many: the rows must be of one model, all with or all without their keys")
        values.extend(_insert_value(obj, field) for field in fields)
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        rows = cursor.fetchall() if returning else [()] * len(objs)
    for obj, row in zip(objs, rows, strict=True):
        for field, value in zip(returning, row, strict=True):
            for converter in field.get_db_converters(connection):
                value = converter(value, field, connection)
            setattr(obj, field.attname, value)
        obj._state.adding = False
        obj._state.db = connection.alias


@functools.cache
def _update_statement(model: type[Model], names: tuple[str, ...]) -> tuple[str, tuple]:
    meta = model._meta
    fields = tuple(meta.get_field(name) for name in names)
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608 - names from model meta
    return sql, fields


def update(obj: Model, fields: Sequence[str]) -> None:
    """Write `fields` of a saved `obj` as `obj.save(update_fields=fields)` would (without its check that
    the row still exists: the callers hold it locked)."""
    sql, concrete = _update_statement(type(obj), tuple(fields))
    values = [field.get_db_prep_save(field.pre_save(obj, add=False), connection) for field in concrete]
    values.append(obj._meta.pk.get_db_prep_value(obj.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, values)


def insert_select(obj: Model, *, source: str, columns: dict[str, str]) -> tuple[str, list]:
    """`INSERT … SELECT` of new `obj` from `source` (a CTE's name), for a statement that writes several
    rows at once: `columns` maps column names to SQL read from the source (e.g. {"wallet_id": "w.id"}), in
    which `{}` stands for the field's own value; every other field is that value, a parameter prepared as
    `insert` prepares it. Returns the SQL and its parameters."""
    meta = obj._meta
    quote = connection.ops.quote_name
    names, values, params = [], [], []
    for field in _written_fields(meta, obj.pk is not None):
        names.append(quote(field.column))
        if field.column in columns:
            expression = columns[field.column]
            if "{}" in expression:
                expression = expression.replace("{}", "%s")
                params.append(_insert_value(obj, field))
            values.append(expression)
        else:
            values.append("%s")
            params.append(_insert_value(obj, field))
    sql = f"INSERT INTO {quote(meta.db_table)} ({', '.join(names)}) SELECT {', '.join(values)} FROM {source}"  # noqa: S608 - names from model meta
    return sql, params
