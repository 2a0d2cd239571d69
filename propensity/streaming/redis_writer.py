"""Session feature rows into Feast's Redis online store, as `FeatureStore.push(..., to=ONLINE)` would write them.

Why not `push`: per micro-batch it resolves the push source's views from the registry, converts the frame to Arrow
and then every value to a ValueProto through Feast's generic type map, and makes two round trips; at ~800 sessions
per batch that was ~150 µs per row, a fifth of the stream's batch time. This writer resolves the views, hash fields
and value kinds once, and per batch encodes each column with one ValueProto kind and makes the same two round trips.

The layout is Feast's, never a copy of it (as in `serving/online_features.py`, the reader): entity keys from Feast's
`_redis_key`, hash fields from `_mmh3(f"{view}:{feature}")` and `_ts:{view}`, view names from
`compute_versioned_name`, values as `ValueProto` and timestamps as protobuf `Timestamp`. A test compares what this
writes with what `push` writes, byte for byte.

The views of every push source it is given (the session's features and its fold state) share the session's key: one
HSET per session writes them together, so a reader never sees the features of one decision point with the fold state
of another.

One difference, on purpose: Feast skips a row whose timestamp equals the stored one; the stream's newest row of a
session can share its timestamp with the row written by the previous batch (events of one instant split across two
micro-batches) and then carries more events, so it is written. A stored row that is strictly newer is kept, as in
Feast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from feast import FeatureStore
from feast.infra.online_stores.helpers import _mmh3, _redis_key, compute_versioned_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import StringList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Array, Float32, Float64, Int32, Int64, String
from google.protobuf.timestamp_pb2 import Timestamp

from propensity.streaming.processor import OnlineStoreUnreachable

SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0
_VALUE_KIND = {
    Int64: "int64_val",
    Int32: "int32_val",
    Float64: "double_val",
    Float32: "float_val",
    Array(String): "string_list_val",
}
_EMPTY = ValueProto().SerializeToString()  # Feast's encoding of a null (NaN) value


# Small integers (counters, hours, weekdays) repeat in every batch: their bytes are built once.
_ENCODED_INTS: dict[tuple[str, int], bytes] = {}
_CACHED_BELOW = 1 << 16


def _encode_int(kind: str, value: int) -> bytes:
    blob = _ENCODED_INTS.get((kind, value))
    if blob is None:
        blob = ValueProto(**{kind: value}).SerializeToString()
        if -_CACHED_BELOW < value < _CACHED_BELOW:
            _ENCODED_INTS[(kind, value)] = blob
    return blob


def _encode_column(values: pd.Series, kind: str) -> list[bytes]:
    if kind == "string_list_val":
        return [
            _EMPTY if v is None else ValueProto(string_list_val=StringList(val=list(v))).SerializeToString()
            for v in values.tolist()
        ]
    if kind in ("double_val", "float_val"):
        return [
            _EMPTY if v != v else ValueProto(**{kind: v}).SerializeToString() for v in values.astype("float64").tolist()
        ]
    if values.isna().any():
        return [_EMPTY if pd.isna(v) else _encode_int(kind, int(v)) for v in values.tolist()]
    return [_encode_int(kind, v) for v in values.astype("int64").tolist()]


def _timestamp_nanos(blob: bytes | None) -> int:
    if not blob:
        return -1
    ts = Timestamp.FromString(blob)
    return ts.seconds * 1_000_000_000 + ts.nanos


class _View:
    def __init__(self, store: FeatureStore, view) -> None:
        versioning = store.config.registry.enable_online_feature_view_versioning
        stored = compute_versioned_name(view, versioning)
        columns = list(view.entity_columns)
        if len(columns) != 1 or columns[0].dtype != String:
            raise NotImplementedError(f"feature view {view.name!r}: one string join key expected")
        self.join_key = columns[0].name
        self.ts_field = f"_ts:{stored}".encode()
        self.features: list[tuple[str, bytes, str]] = []
        for field in view.features:
            if field.dtype not in _VALUE_KIND:
                raise NotImplementedError(f"feature {view.name}.{field.name}: type {field.dtype} is not written here")
            self.features.append((field.name, _mmh3(f"{stored}:{field.name}"), _VALUE_KIND[field.dtype]))


class RedisPushWriter:
    """`write(rows)`: rows with the join key, `event_timestamp` and the features of every view the push sources
    feed; one row per entity (the stream sends each session's newest)."""

    def __init__(self, store: FeatureStore, push_source_names: str | list[str]) -> None:
        import redis
        from feast.infra.online_stores.redis import RedisOnlineStore, RedisType
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        config = store.config
        online = config.online_store
        if online.type != "redis" or online.redis_type != RedisType.redis:
            raise NotImplementedError("RedisPushWriter writes to a single Redis online store")
        names = [push_source_names] if isinstance(push_source_names, str) else list(push_source_names)
        views = [
            fv for fv in store.list_feature_views() if fv.stream_source is not None and fv.stream_source.name in names
        ]
        fed = {fv.stream_source.name for fv in views}
        if fed != set(names):
            raise ValueError(f"no feature view is fed by push source(s) {sorted(set(names) - fed)}")
        precomputed = [s.name for s in store.list_feature_services() if getattr(s, "precompute_online", False)]
        if precomputed:  # push would refresh their precomputed vectors; this writer does not
            raise NotImplementedError(
                f"feature services {precomputed} precompute online vectors: use FeatureStore.push"
            )
        self.project = store.project
        self.key_version = config.entity_key_serialization_version
        self.ttl_s = online.key_ttl_seconds
        self.views = [_View(store, fv) for fv in views]
        if len({v.join_key for v in self.views}) != 1:
            raise NotImplementedError("the push sources' views must share one join key (one HSET per entity)")
        self.join_key = self.views[0].join_key
        nodes, kwargs = RedisOnlineStore._parse_connection_string(online.connection_string)
        # redis-py's own retries are off (they held a failing batch ~8 s, then failed the job): the stream's retries,
        # with backoff and for as long as the store is away, are `SessionStreamProcessor`'s.
        kwargs.update(
            host=nodes[0]["host"],
            port=int(nodes[0]["port"]),
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        self.redis = redis.Redis(**kwargs)
        self._where = f"redis at {kwargs['host']}:{kwargs['port']} db {kwargs.get('db', 0)}"
        self._unreachable = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

    def _keys(self, join_key: str, ids: list[str]) -> list[bytes]:
        return [
            _redis_key(
                self.project,
                EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=i)]),
                entity_key_serialization_version=self.key_version,
            )
            for i in ids
        ]

    def write(self, rows: pd.DataFrame) -> None:
        """Write the rows; `OnlineStoreUnreachable` when Redis does not answer (the stream retries the batch)."""
        if rows.empty:
            return
        try:
            self._write(rows)
        except self._unreachable as error:
            raise OnlineStoreUnreachable(f"{self._where}: {type(error).__name__}: {error}") from error

    def _write(self, rows: pd.DataFrame) -> None:
        if rows[self.join_key].duplicated().any():  # which of two rows Feast keeps depends on its batch order
            raise ValueError(
                f"one row per {self.join_key} expected; duplicates: "
                f"{rows.loc[rows[self.join_key].duplicated(), self.join_key].unique()[:5].tolist()}"
            )
        # Feast goes through datetime (µs); counted in ns whatever unit the column has (the fold's is µs)
        times = pd.to_datetime(rows["event_timestamp"], utc=True).dt.floor("us").dt.as_unit("ns")
        nanos = times.astype("int64").to_numpy()
        stamps = [
            Timestamp(seconds=int(n // 1_000_000_000), nanos=int(n % 1_000_000_000)).SerializeToString() for n in nanos
        ]
        keys = self._keys(self.join_key, rows[self.join_key].astype(str).tolist())
        ts_fields = [view.ts_field for view in self.views]
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, ts_fields)
            stored = np.array([[_timestamp_nanos(b) for b in reply] for reply in pipe.execute()], dtype=np.int64)
        write = nanos[:, None] >= stored  # per view: a stored row that is strictly newer stays
        if not write.any():
            return
        encoded = [
            [(field, _encode_column(rows[name], kind)) for name, field, kind in view.features] for view in self.views
        ]
        with self.redis.pipeline(transaction=False) as pipe:
            for i in np.flatnonzero(write.any(axis=1)):
                mapping = {}
                for v, view in enumerate(self.views):
                    if write[i, v]:
                        mapping[view.ts_field] = stamps[i]
                        for field, values in encoded[v]:
                            mapping[field] = values[i]
                pipe.hset(keys[i], mapping=mapping)
                if self.ttl_s:
                    pipe.expire(keys[i], self.ttl_s)
            pipe.execute()
