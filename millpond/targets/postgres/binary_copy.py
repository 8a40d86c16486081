"""Arrow batches as PostgreSQL's binary COPY format, column by column, with no per-row Python.

Why: the CSV route made pyarrow print every value and PostgreSQL parse it back (1.7x the time
of a plain COPY). Here each column becomes a binary array whose element i is field i of row i as
binary COPY wants it (a big-endian 4-byte length, -1 for null, then the value in the column
type's binary form), built with numpy and Arrow kernels; `binary_join_element_wise` joins a
row's fields, and the joined array's data buffer is the batch's COPY data.

Only same-type columns are encoded here (the partition's type is the column's type), plus text
columns, which take any value as the text the CSV route wrote (Arrow's cast to string is what
its CSV writer prints). A partition that widens a column goes through the CSV route, where
PostgreSQL's own text parsing decides the wider values exactly as before (load.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from millpond.targets.postgres.types import to_postgres

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
_NULL_FIELD = pa.scalar(b"\xff\xff\xff\xff", pa.binary())
_EMPTY = pa.scalar(b"", pa.binary())
_PG_EPOCH_DAYS = 10_957  # 2000-01-01, PostgreSQL's epoch, in days after 1970-01-01
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400 * 1_000_000
_NUMERIC = re.compile(r"numeric\((\d+), (\d+)\)")
_NUMERIC_NEG = 0x4000

# Fixed-width records (an array per row), or binary fields ready to join.
Field: TypeAlias = "np.ndarray | pa.Array"
Encoder = Callable[[pa.Array], list[Field]]


def binary_ready(incoming: dict[str, str], columns: dict[str, str]) -> bool:
    """Whether every incoming column can go as binary: a text column takes anything, any
    other column only its own type (a widening is left to PostgreSQL's parsing, over CSV)."""
    return all(
        to_postgres(columns[c]) == "text" or (kind == columns[c] and _encoder(columns[c]))
        for c, kind in incoming.items()
    )


def select_expression(column: str, target: str, as_text: str) -> str:
    """The DuckDB expression giving the Arrow shape the column's encoder takes; `as_text` is
    the CSV route's expression, used for text columns so they get the same text."""
    pg_type = to_postgres(target)
    if pg_type == "text":
        return as_text
    quoted = '"' + column.replace('"', '""') + '"'
    if pg_type == "uuid":
        return f"unhex(replace(cast({quoted} as varchar), '-', '')) as {quoted}"
    return quoted


def encode_batch(
    batch: pa.RecordBatch, targets: list[str], constants: tuple[str, ...] = ()
) -> pa.Buffer:
    """The batch's rows in binary COPY format (no header or trailer); `targets` are the
    columns' DuckDB types, in the batch's column order. `constants` are text fields every
    row ends with (the partition id): encoded once, not read and measured row by row."""
    if batch.num_rows == 0:
        return pa.py_buffer(b"")
    count = len(targets) + len(constants)
    fields: list[Field] = [np.full(batch.num_rows, count, ">i2")]  # each row's field count
    for array, target in zip(batch.columns, targets, strict=True):
        encoder = _encoder(target)
        assert encoder is not None
        fields.extend(encoder(array))
    for text in constants:
        value = text.encode()
        field = np.frombuffer(len(value).to_bytes(4, "big") + value, np.uint8)
        fields.append(np.broadcast_to(field, (batch.num_rows, len(field))))
    rows = pc.binary_join_element_wise(*_packed(fields), _EMPTY)
    offsets = np.frombuffer(rows.buffers()[1], np.int32)[rows.offset : rows.offset + len(rows) + 1]
    data = rows.buffers()[2]
    return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def _encoder(target: str) -> Encoder | None:
    pg_type = to_postgres(target)
    numeric = _NUMERIC.fullmatch(pg_type)
    if numeric:
        return lambda a: _numeric(a, int(numeric.group(1)), int(numeric.group(2)))
    return _ENCODERS.get(pg_type)


def _packed(fields: list[Field]) -> list[pa.Array]:
    """The fields as binary arrays, neighbouring fixed-width ones packed side by side into
    one record per row first (a strided byte copy), so the row join has fewer, longer pieces."""
    joined: list[pa.Array] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            joined.append(_as_binary(np.concatenate(pending, axis=1)))
        pending.clear()

    for field in fields:
        if isinstance(field, np.ndarray):
            pending.append(_as_bytes(field))
        else:
            flush()
            joined.append(field)
    flush()
    return joined


def _as_bytes(values: np.ndarray) -> np.ndarray:
    """Fixed-width values as an (n, width) byte matrix (a view when they are contiguous)."""
    if values.ndim == 2:
        return values
    values = np.ascontiguousarray(values)
    return values.view(np.uint8).reshape(len(values), values.dtype.itemsize)


def _as_binary(record: np.ndarray) -> pa.Array:
    """An (n, width) byte matrix as a binary array of n elements."""
    record = np.ascontiguousarray(record)
    rows, width = record.shape
    if rows * width >= 2**31:  # beyond binary's 32-bit offsets: Arrow's cast says so
        return pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(width), rows, [None, pa.py_buffer(record)]
        ).cast(pa.binary())
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
    return pa.BinaryArray.from_buffers(
        pa.binary(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(record)]
    )


def _fixed(values: np.ndarray, array: pa.Array) -> Field:
    """Fixed-width big-endian values as fields, length prefix included: an (n, 4 + width)
    byte matrix, or a binary array with the null field where `array` is null."""
    # Whole-field assignments into a record dtype: numpy copies them in tight loops, where a
    # byte-matrix copy would loop row by row.
    width = values.dtype.itemsize
    names = values.dtype.names or ()
    parts = [(n, values.dtype[n]) for n in names] or [("value", values.dtype)]
    packed = np.empty(len(values), [("length", ">i4"), *parts])
    packed["length"] = width
    for name in names:
        packed[name] = values[name]
    if not names:
        packed["value"] = values
    record = packed.view(np.uint8).reshape(len(values), 4 + width)
    if array.null_count:
        return pc.if_else(pc.is_valid(array), _as_binary(record), _NULL_FIELD)
    return record


def _values(array: pa.Array, fill: object = 0) -> np.ndarray:
    if array.null_count:
        array = pc.fill_null(array, pa.scalar(fill, array.type))
    return array.to_numpy(zero_copy_only=False)


def _variable(array: pa.Array) -> list[Field]:
    """Text or bytes as two pieces per row: the length (-1 for null; fixed width, so packed
    with the fixed-width fields before it) and the bytes."""
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        array = array.cast(pa.binary())
    elif not pa.types.is_binary(array.type):
        array = array.cast(pa.string()).cast(pa.binary())  # what the CSV writer printed
    lengths = pc.binary_length(array)
    if array.null_count:
        return [
            pc.fill_null(lengths, -1).to_numpy().astype(">i4"),
            pc.fill_null(array, _EMPTY),
        ]
    return [lengths.to_numpy().astype(">i4"), array]


def _scalar(dtype: str) -> Encoder:
    return lambda a: [_fixed(_values(a).astype(dtype), a)]


def _boolean(array: pa.Array) -> list[Field]:
    return [_fixed(_values(array, False).astype(np.uint8), array)]


def _date(array: pa.Array) -> list[Field]:
    days = _values(array.cast(pa.int32())).astype(np.int64) - _PG_EPOCH_DAYS
    return [_fixed(days.astype(">i4"), array)]


def _time(array: pa.Array) -> list[Field]:
    micros = _values(array.cast(pa.time64("us")).cast(pa.int64()))
    return [_fixed(micros.astype(">i8"), array)]


def _timestamp(array: pa.Array) -> list[Field]:
    """Microseconds after 2000-01-01. Nanoseconds round as PostgreSQL rounded the CSV's
    nine-digit fraction: rint(strtod(".fffffffff") * 1e6), the double arithmetic repeated."""
    unit = array.type.unit
    raw = _values(array.cast(pa.int64()))
    if unit == "ns":
        seconds, nanos = np.divmod(raw, 1_000_000_000)
        micros = seconds * 1_000_000 + np.rint(nanos / 1e9 * 1e6).astype(np.int64)
    else:
        micros = raw * {"s": 1_000_000, "ms": 1_000, "us": 1}[unit]
    return [_fixed((micros - _PG_EPOCH_US).astype(">i8"), array)]


def _interval(array: pa.Array) -> list[Field]:
    """PostgreSQL's interval: microseconds, days, months (DuckDB's intervals are whole
    microseconds, exported as nanoseconds)."""
    parts = np.frombuffer(
        array.buffers()[1], [("months", "<i4"), ("days", "<i4"), ("nanos", "<i8")]
    )[array.offset : array.offset + len(array)]
    value = np.empty(len(array), [("time", ">i8"), ("days", ">i4"), ("months", ">i4")])
    value["time"] = parts["nanos"] // 1000
    value["days"] = parts["days"]
    value["months"] = parts["months"]
    return [_fixed(value, array)]


def _numeric(array: pa.Array, precision: int, scale: int) -> list[Field]:
    """A decimal128 column as PostgreSQL's numeric: base-10000 digits aligned on the decimal
    point (leading and trailing zero digits are fine: PostgreSQL strips them), sign, scale.
    An out-of-range value (a HUGEINT's 39th digit) reaches PostgreSQL's own overflow error."""
    if not pa.types.is_decimal(array.type):
        array = array.cast(pa.decimal128(38, 0))
    words = np.frombuffer(array.buffers()[1], "<u8")[
        2 * array.offset : 2 * (array.offset + len(array))
    ]
    whole_digits = -(-(max(precision, 39 if precision == 38 else precision) - scale) // 4)
    if precision <= 18:  # the value fits its low 64-bit word: plain numpy division
        signed = words[0::2].view(np.int64)
        negative = signed < 0
        digits = _digits_of_word(np.abs(signed), scale, whole_digits)
    else:
        low, high = words[0::2].copy(), words[1::2].copy()
        negative = (high >> np.uint64(63)).astype(bool)
        # Two's complement magnitude of the negatives.
        neg_low = ~low + np.uint64(1)
        high = np.where(negative, ~high + (neg_low == 0).astype(np.uint64), high)
        low = np.where(negative, neg_low, low)
        digits = _digits_of_limbs(low, high, scale, whole_digits)
    count = len(digits)
    value = np.empty(
        len(array),
        [
            ("ndigits", ">i2"),
            ("weight", ">i2"),
            ("sign", ">u2"),
            ("dscale", ">i2"),
            ("digits", ">i2", (count,)),
        ],
    )
    value["ndigits"] = count
    value["weight"] = whole_digits - 1
    value["sign"] = np.where(negative, _NUMERIC_NEG, 0)
    value["dscale"] = scale
    for position, digit in enumerate(reversed(digits)):
        value["digits"][:, position] = digit
    return [_fixed(value, array)]


def _digits_of_word(magnitude: np.ndarray, scale: int, whole_digits: int) -> list[np.ndarray]:
    """Base-10000 digits, least significant first, of magnitudes below 2**63 with `scale`
    decimal places: the fraction padded to whole digits."""
    digits: list[np.ndarray] = []
    rest = magnitude
    odd = scale % 4
    if odd:
        rest, remainder = np.divmod(rest, 10**odd)
        digits.append(remainder * 10 ** (4 - odd))
    for _ in range(whole_digits + scale // 4):
        rest, remainder = np.divmod(rest, 10_000)
        digits.append(remainder)
    return digits


def _digits_of_limbs(
    low: np.ndarray, high: np.ndarray, scale: int, whole_digits: int
) -> list[np.ndarray]:
    """As _digits_of_word, for 128-bit magnitudes (as four 32-bit limbs)."""
    mask = np.uint64(0xFFFFFFFF)
    limbs = [high >> np.uint64(32), high & mask, low >> np.uint64(32), low & mask]
    digits: list[np.ndarray] = []
    odd = scale % 4
    if odd:
        limbs, remainder = _divide(limbs, 10**odd)
        digits.append(remainder * np.uint64(10 ** (4 - odd)))
    for _ in range(whole_digits + scale // 4):
        limbs, remainder = _divide(limbs, 10_000)
        digits.append(remainder)
    return digits


def _divide(limbs: list[np.ndarray], divisor: int) -> tuple[list[np.ndarray], np.ndarray]:
    """A 128-bit magnitude (four 32-bit limbs, most significant first) divided by a small
    divisor: the quotient's limbs and the remainder."""
    d = np.uint64(divisor)
    remainder = np.zeros_like(limbs[0])
    quotient = []
    for limb in limbs:
        current = (remainder << np.uint64(32)) | limb
        q = current // d
        remainder = current - q * d
        quotient.append(q)
    return quotient, remainder


_ENCODERS: dict[str, Encoder] = {
    "boolean": _boolean,
    "smallint": _scalar(">i2"),
    "integer": _scalar(">i4"),
    "bigint": _scalar(">i8"),
    "real": _scalar(">f4"),
    "double precision": _scalar(">f8"),
    "text": _variable,
    "bytea": _variable,
    "uuid": _variable,
    "date": _date,
    "time": _time,
    "timestamp": _timestamp,
    "timestamptz": _timestamp,
    "interval": _interval,
}
