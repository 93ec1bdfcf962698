"""Results as plain data: how a sealed notebook hands the outputs of a student's functions to the grader.

Inside the seal (:mod:`grading.sealed_run`) :func:`encode` turns whatever a student's function returned into JSON
made of a few tagged forms; outside, the grader reads it back with :func:`decode`, which accepts nothing else: no
pickle, no object that runs code when it is read, only numbers, strings, ``None``, lists, tuples, dicts and NumPy
arrays of plain numeric or boolean dtypes, each within a size limit. Anything else a function returns is encoded
as ``{"t": "unsupported", "type": ...}`` and is never equal to an expected value.

The kernel is the student's, so everything that comes out of it may be forged: :func:`decode` is written for
hostile input (sizes checked before anything is allocated, every field type-checked). Types survive the round
trip: a Python ``float`` stays a ``float``, ``np.float64(1.0)`` a NumPy scalar, a boolean array a boolean array,
so that the comparisons of :mod:`grading.checks` see what the student's function returned.
"""

from __future__ import annotations

import base64
import math

import numpy as np

__all__ = ["encode", "decode", "DecodeError", "MAX_ARRAY_BYTES", "MAX_ITEMS", "MAX_STRING", "MAX_DEPTH"]

MAX_ARRAY_BYTES = 64 * 1024 * 1024  # one array
MAX_ITEMS = 100_000  # items of one list, tuple or dict
MAX_STRING = 100_000  # characters of one string
MAX_DEPTH = 20  # nesting of lists, tuples and dicts
#: dtypes an array may have (anything else, e.g. object arrays, is "unsupported")
DTYPES = frozenset(["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                    "float16", "float32", "float64", "complex64", "complex128"])


class DecodeError(ValueError):
    """Data that :func:`encode` cannot have written (forged, truncated or too large)."""


def _float(value):
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def encode(value, _depth=0):
    """``value`` as JSON-ready tagged data (never raises: what it cannot encode is marked unsupported)."""
    if _depth > MAX_DEPTH:
        return {"t": "unsupported", "type": "nesting too deep"}
    if value is None:
        return {"t": "none"}
    if isinstance(value, (bool, np.bool_)):
        return {"t": "bool" if isinstance(value, bool) else "npscalar", "dtype": "bool", "v": bool(value)}
    if isinstance(value, np.generic) and value.dtype.name in DTYPES:
        item = value.item()
        if isinstance(item, complex):
            item = [_float(item.real), _float(item.imag)]
        elif isinstance(item, float):
            item = _float(item)
        elif isinstance(item, int):
            item = str(item)
        return {"t": "npscalar", "dtype": value.dtype.name, "v": item}
    if isinstance(value, int) and type(value) is int:
        text = str(value)
        return {"t": "int", "v": text} if len(text) <= 400 else {"t": "unsupported", "type": "huge int"}
    if isinstance(value, float) and type(value) is float:
        return {"t": "float", "v": _float(value)}
    if isinstance(value, complex) and type(value) is complex:
        return {"t": "complex", "v": [_float(value.real), _float(value.imag)]}
    if isinstance(value, str) and type(value) is str:
        return {"t": "str", "v": value[:MAX_STRING]}
    if isinstance(value, np.ndarray) and type(value) is np.ndarray:
        if value.dtype.name not in DTYPES or value.nbytes > MAX_ARRAY_BYTES:
            return {"t": "unsupported", "type": f"array of dtype {value.dtype}"}
        data = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<"), copy=False)
        return {"t": "ndarray", "dtype": value.dtype.name, "shape": list(value.shape),
                "b64": base64.b64encode(data.tobytes()).decode("ascii")}
    if type(value) in (list, tuple):
        if len(value) > MAX_ITEMS:
            return {"t": "unsupported", "type": f"{type(value).__name__} too long"}
        return {"t": type(value).__name__, "items": [encode(item, _depth + 1) for item in value]}
    if type(value) is dict:
        if len(value) > MAX_ITEMS:
            return {"t": "unsupported", "type": "dict too long"}
        return {"t": "dict", "items": [[encode(k, _depth + 1), encode(v, _depth + 1)] for k, v in value.items()]}
    return {"t": "unsupported", "type": type(value).__name__[:100]}


def _number(raw):
    if raw in ("nan", "inf", "-inf"):
        return float(raw)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise DecodeError(f"not a number: {raw!r:.50}")
    return float(raw)


def _int(raw):
    if not isinstance(raw, str) or len(raw) > 400:
        raise DecodeError("bad integer")
    try:
        return int(raw)
    except ValueError:
        raise DecodeError("bad integer") from None


class Unsupported:
    """What a student's function returned that :func:`encode` could not represent (equal to nothing)."""

    def __init__(self, type_name):
        self.type_name = str(type_name)[:100]

    def __repr__(self):
        return f"<unsupported {self.type_name}>"


def decode(data, _depth=0):
    """The value that :func:`encode` encoded as ``data``; :class:`DecodeError` for anything else."""
    if _depth > MAX_DEPTH + 1:
        raise DecodeError("nesting too deep")
    if not isinstance(data, dict) or not isinstance(data.get("t"), str):
        raise DecodeError("not an encoded value")
    tag = data["t"]
    if tag == "none":
        return None
    if tag == "bool":
        if not isinstance(data.get("v"), bool):
            raise DecodeError("bad bool")
        return data["v"]
    if tag == "int":
        return _int(data.get("v"))
    if tag == "float":
        return _number(data.get("v"))
    if tag == "complex":
        raw = data.get("v")
        if not isinstance(raw, list) or len(raw) != 2:
            raise DecodeError("bad complex")
        return complex(_number(raw[0]), _number(raw[1]))
    if tag == "str":
        if not isinstance(data.get("v"), str) or len(data["v"]) > MAX_STRING:
            raise DecodeError("bad string")
        return data["v"]
    if tag == "npscalar":
        dtype = data.get("dtype")
        if dtype not in DTYPES:
            raise DecodeError("bad dtype")
        raw = data.get("v")
        if dtype == "bool":
            if not isinstance(raw, bool):
                raise DecodeError("bad bool")
            return np.bool_(raw)
        if dtype.startswith(("int", "uint")):
            try:
                return np.dtype(dtype).type(_int(raw))
            except OverflowError:
                raise DecodeError("integer out of range") from None
        if dtype.startswith("complex"):
            if not isinstance(raw, list) or len(raw) != 2:
                raise DecodeError("bad complex")
            return np.dtype(dtype).type(complex(_number(raw[0]), _number(raw[1])))
        return np.dtype(dtype).type(_number(raw))
    if tag == "ndarray":
        dtype, shape, b64 = data.get("dtype"), data.get("shape"), data.get("b64")
        if dtype not in DTYPES or not isinstance(shape, list) or not isinstance(b64, str):
            raise DecodeError("bad array")
        if len(shape) > 32 or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s for s in shape):
            raise DecodeError("bad array shape")
        itemsize = np.dtype(dtype).itemsize
        size = math.prod(shape)
        if size * itemsize > MAX_ARRAY_BYTES or len(b64) > (MAX_ARRAY_BYTES * 4) // 3 + 8:
            raise DecodeError("array too large")
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError:
            raise DecodeError("bad array data") from None
        if len(raw) != size * itemsize:
            raise DecodeError("array data does not match its shape")
        return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)
    if tag in ("list", "tuple"):
        items = data.get("items")
        if not isinstance(items, list) or len(items) > MAX_ITEMS:
            raise DecodeError("bad sequence")
        decoded = [decode(item, _depth + 1) for item in items]
        return decoded if tag == "list" else tuple(decoded)
    if tag == "dict":
        items = data.get("items")
        if not isinstance(items, list) or len(items) > MAX_ITEMS:
            raise DecodeError("bad dict")
        result = {}
        for pair in items:
            if not isinstance(pair, list) or len(pair) != 2:
                raise DecodeError("bad dict item")
            key = decode(pair[0], _depth + 1)
            if not isinstance(key, (str, int, float, bool, type(None), tuple)):
                raise DecodeError("bad dict key")
            try:
                result[key] = decode(pair[1], _depth + 1)
            except TypeError:  # an unhashable key
                raise DecodeError("bad dict key") from None
        return result
    if tag == "unsupported":
        return Unsupported(data.get("type", "?"))
    raise DecodeError(f"unknown tag {tag!r:.40}")
