"""Small type and range checks that raise OpenAI-shaped 400s naming the param."""

from collections.abc import Mapping
from typing import Any, Literal, NoReturn, overload

from sogni_platform.exceptions import ApiError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def invalid(message: str, *, param: str | None, code: str | None = "invalid_value") -> NoReturn:
    raise ApiError(message, param=param, code=code)


def unsupported(param: str, reason: str) -> NoReturn:
    raise ApiError(f"Unsupported parameter: '{param}' {reason}", param=param, code="unsupported_parameter")


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def wrong_type(param: str, expected: str, value: Any) -> NoReturn:
    invalid(
        f"Invalid type for '{param}': expected {expected}, but got {type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def missing(param: str) -> NoReturn:
    invalid(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@overload
def get_str(obj: Mapping, key: str, param: str, *, required: Literal[True], allow_empty: bool = True) -> str: ...
@overload
def get_str(obj: Mapping, key: str, param: str, *, required: bool = False, allow_empty: bool = True) -> str | None: ...
def get_str(obj: Mapping, key: str, param: str, *, required: bool = False, allow_empty: bool = True) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            missing(param)
        return None
    if not isinstance(value, str):
        wrong_type(param, "a string", value)
    if not allow_empty and not value:
        invalid(f"Invalid '{param}': empty string. Expected a non-empty string.", param=param, code="empty_string")
    return value


def get_bool(obj: Mapping, key: str, param: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        wrong_type(param, "a boolean", value)
    return value


def get_int(
    obj: Mapping, key: str, param: str, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not is_int(value):
        wrong_type(param, "an integer", value)
    if minimum is not None and value < minimum:
        invalid(
            f"Invalid '{param}': integer below minimum value. Expected a value >= {minimum}, but got {value} instead.",
            param=param,
            code="integer_below_min_value",
        )
    if maximum is not None and value > maximum:
        invalid(
            f"Invalid '{param}': integer above maximum value. Expected a value <= {maximum}, but got {value} instead.",
            param=param,
            code="integer_above_max_value",
        )
    return value


def get_number(
    obj: Mapping,
    key: str,
    param: str,
    *,
    minimum: float,
    maximum: float | None,
    exclusive_minimum: bool = False,
) -> float | int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not is_number(value):
        wrong_type(param, "a number", value)
    if value < minimum or (exclusive_minimum and value == minimum):
        bound = f"> {minimum}" if exclusive_minimum else f">= {minimum}"
        invalid(
            f"Invalid '{param}': number below minimum value. Expected a value {bound}, but got {value} instead.",
            param=param,
            code="decimal_below_min_value",
        )
    if maximum is not None and value > maximum:
        invalid(
            f"Invalid '{param}': number above maximum value. Expected a value <= {maximum}, but got {value} instead.",
            param=param,
            code="decimal_above_max_value",
        )
    return value


def get_object(obj: Mapping, key: str, param: str) -> dict | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        wrong_type(param, "an object", value)
    return value


def get_list(obj: Mapping, key: str, param: str) -> list | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        wrong_type(param, "an array", value)
    return value
