"""Read one decision's model features from Feast's online store in one round trip.

Why not `FeatureStore.get_online_features`: it re-resolves the feature service, groups references, builds response
protos and converts them to Python per call; that overhead dominates a one-row read. This reader resolves everything
that does not change per request once, at start-up (views, feature order, project, key encoding, hash fields, SQL),
and per request only encodes the two entity keys, makes one round trip and decodes the values into a float64 vector.

The storage layout is Feast's, never a copy of it: entity keys are encoded with Feast's `serialize_entity_key` /
`_redis_key`, Redis hash fields with Feast's `_mmh3(f"{view}:{feature}")` and `_ts:{view}`, view names with Feast's
`compute_versioned_name` / `compute_table_id`, SQLite timestamps with Feast's own converter, values with `ValueProto`.
A Feast upgrade that changes its layout therefore changes ours with it (and the integration test compares the two
readers value for value).

- Redis: one `pipeline(transaction=False)` of HMGETs (one per entity key and view) and one `execute()`; every socket
  operation has a timeout and redis-py's retries are off, so a dead server costs at most the connect timeout.
- SQLite: one `SELECT ... UNION ALL ...` over the views' tables.

Like `get_online_features`, the reader applies no view ttl: it reports each view's row timestamp (freshness) and
leaves the staleness policy to the caller. Any store failure raises `OnlineStoreUnavailable`.

`read_many(..., with_fold_state=True)` also reads the session's `session_fold_state` row (what its newest decision
point has folded, for a request's own events: `propensity.features.request_fold`) in the same round trip; it is
returned only when its timestamp is the session row's, so features and state always describe the same point.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
from feast import FeatureStore
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3, _redis_key, compute_table_id, compute_versioned_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import String
from google.protobuf.timestamp_pb2 import Timestamp

from propensity.features.definitions import (
    FEATURE_SERVICE_NAME,
    FOLD_STATE_FIELDS,
    MODEL_FEATURE_NAMES,
    SESSION_ENTITY_KEY,
    SESSION_FEATURE_VIEW,
    SESSION_FOLD_STATE_VIEW,
    USER_ENTITY_KEY,
)

DEFAULT_SOCKET_TIMEOUT_S = 0.05
DEFAULT_CONNECT_TIMEOUT_S = 0.05
_NAN = math.nan


class OnlineStoreUnavailable(RuntimeError):
    """The online store could not be read (down, timed out, missing tables). The server falls back."""


@dataclass(frozen=True, slots=True)
class FoldState:
    """What the session row's decision point has folded (the `session_fold_state` view, FOLD_STATE_FIELDS)."""

    product_ids: frozenset[str]
    category_ids: frozenset[str]
    last_event_ids: frozenset[str]
    decision_time: datetime  # exact (the store's own row timestamp may keep seconds only)


@dataclass(frozen=True, slots=True)
class OnlineFeatures:
    """One (user_id, session_id) pair's features as the model reads them."""

    values: np.ndarray  # float64, MODEL_FEATURE_NAMES order; NaN where missing
    event_timestamps: dict[str, datetime | None]  # per view: the served row's event timestamp (UTC), None if missing
    missing_views: tuple[str, ...]  # views with no row for this pair's entity
    fold_state: FoldState | None = None  # asked for, and stamped as the session row is; else None


@dataclass(frozen=True, slots=True)
class _View:
    name: str  # the feature view's registry name (what callers see)
    stored_name: str  # the name Feast stores it under (versioned when online versioning is on)
    join_key: str
    pair_index: int  # 0: user_id, 1: session_id
    features: tuple[str, ...]
    columns: tuple[int, ...]  # position of each feature in MODEL_FEATURE_NAMES


_PAIR_INDEX = {USER_ENTITY_KEY: 0, SESSION_ENTITY_KEY: 1}


def _decode_value(blob: bytes | None) -> float:
    if not blob:
        return _NAN
    value = ValueProto.FromString(blob)
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return _NAN
    return float(getattr(value, kind))


def _decode_ids(blob: bytes | None) -> frozenset[str]:
    if not blob:
        return frozenset()
    return frozenset(ValueProto.FromString(blob).string_list_val.val)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _decode_fold_state(blobs: tuple) -> FoldState | None:
    *ids, time_blob = blobs
    if not time_blob:
        return None
    micros = ValueProto.FromString(time_blob).int64_val
    return FoldState(*(_decode_ids(b) for b in ids), decision_time=_EPOCH + timedelta(microseconds=micros))


class OnlineFeatureReader:
    """Built once at start-up from a FeatureStore; `read` / `read_many` then cost one online-store round trip."""

    def __init__(
        self,
        store: FeatureStore,
        feature_service_name: str = FEATURE_SERVICE_NAME,
        *,
        profile: str | None = None,
        socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        config = store.config
        self.profile = profile
        self.store_type: str = config.online_store.type
        self.project: str = store.project
        self.feature_service_name = feature_service_name
        self.feature_names: tuple[str, ...] = MODEL_FEATURE_NAMES
        self.socket_timeout_s = socket_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._key_version: int = config.entity_key_serialization_version
        self._views = self._resolve_views(store, feature_service_name)
        self.view_names: tuple[str, ...] = tuple(v.name for v in self._views)
        # The fold state is read as one more view, after the model's (None when the registry has none).
        self._state_view = self._resolve_state_view(store)
        self._session_view = next((i for i, v in enumerate(self._views) if v.name == SESSION_FEATURE_VIEW), None)
        self._all_views = self._views + ((self._state_view,) if self._state_view else ())

        if self.store_type == "redis":
            self._init_redis(config)
        elif self.store_type == "sqlite":
            self._init_sqlite(config)
        else:
            raise NotImplementedError(f"online store type {self.store_type!r}: only redis and sqlite are supported")

    # ---- start-up -------------------------------------------------------------------------------------------------

    def _resolve_views(self, store: FeatureStore, service_name: str) -> tuple[_View, ...]:
        service = store.get_feature_service(service_name)
        versioning = store.config.registry.enable_online_feature_view_versioning
        position = {name: i for i, name in enumerate(MODEL_FEATURE_NAMES)}
        views, covered = [], []
        for projection in service.feature_view_projections:
            view = store.get_feature_view(projection.name)
            entity_columns = list(view.entity_columns)
            if len(entity_columns) != 1 or entity_columns[0].name not in _PAIR_INDEX:
                raise NotImplementedError(
                    f"feature view {view.name!r}: expected one join key among {sorted(_PAIR_INDEX)}, "
                    f"got {[c.name for c in entity_columns]}"
                )
            if entity_columns[0].dtype != String:
                raise NotImplementedError(f"feature view {view.name!r}: join key must be a string")
            features = tuple(f.name for f in (projection.features or view.features))
            unknown = [f for f in features if f not in position]
            if unknown:
                raise ValueError(f"feature service {service_name!r} serves {unknown}, not in MODEL_FEATURE_NAMES")
            views.append(
                _View(
                    name=view.name,
                    stored_name=compute_versioned_name(view, versioning),
                    join_key=entity_columns[0].name,
                    pair_index=_PAIR_INDEX[entity_columns[0].name],
                    features=features,
                    columns=tuple(position[f] for f in features),
                )
            )
            covered += features
        if sorted(covered) != sorted(MODEL_FEATURE_NAMES):
            missing = sorted(set(MODEL_FEATURE_NAMES) - set(covered))
            raise ValueError(f"feature service {service_name!r} does not serve exactly the model features: {missing}")
        self._table_ids = tuple(
            compute_table_id(self.project, store.get_feature_view(v.name), versioning) for v in views
        )
        return tuple(views)

    def _resolve_state_view(self, store: FeatureStore) -> _View | None:
        from feast.errors import FeatureViewNotFoundException

        try:
            view = store.get_feature_view(SESSION_FOLD_STATE_VIEW)
        except FeatureViewNotFoundException:
            return None  # a registry applied before the view existed: requests' events are not folded
        versioning = store.config.registry.enable_online_feature_view_versioning
        self._table_ids += (compute_table_id(self.project, view, versioning),)
        return _View(
            name=view.name,
            stored_name=compute_versioned_name(view, versioning),
            join_key=SESSION_ENTITY_KEY,
            pair_index=_PAIR_INDEX[SESSION_ENTITY_KEY],
            features=FOLD_STATE_FIELDS,
            columns=(),
        )

    def _init_redis(self, config) -> None:
        import redis
        from feast.infra.online_stores.redis import RedisOnlineStore, RedisType
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        online = config.online_store
        if online.redis_type != RedisType.redis:
            raise NotImplementedError(f"redis_type {online.redis_type.value!r}: only a single Redis is supported")
        nodes, kwargs = RedisOnlineStore._parse_connection_string(online.connection_string)
        kwargs.update(
            host=nodes[0]["host"],
            port=int(nodes[0]["port"]),
            socket_timeout=self.socket_timeout_s,
            socket_connect_timeout=self.connect_timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._redis = redis.Redis(**kwargs)
        self._redis_errors = (redis.exceptions.RedisError, OSError)
        self._where = f"redis at {kwargs['host']}:{kwargs['port']} db {kwargs.get('db', 0)}"
        # HMGET fields per view: the features in order, then the view's timestamp field (Feast's layout).
        self._fields = tuple(
            [_mmh3(f"{v.stored_name}:{f}") for f in v.features] + [f"_ts:{v.stored_name}".encode()]
            for v in self._all_views
        )
        self._read_rows = self._read_redis

    def _init_sqlite(self, config) -> None:
        from feast.infra.online_stores.sqlite import SqliteOnlineStore, _quote_id, convert_timestamp

        self._db_path = SqliteOnlineStore._get_db_path(config)
        self._where = f"sqlite at {self._db_path}"
        self._convert_ts = convert_timestamp  # Feast's reading of its own event_ts column
        self._sqlite: sqlite3.Connection | None = None
        self._sqlite_lock = threading.Lock()
        self._feature_slot = tuple({f: i for i, f in enumerate(v.features)} for v in self._all_views)
        self._quote = _quote_id
        self._sql_cache: dict[tuple[int, ...], str] = {}
        self._read_rows = self._read_sqlite

    # ---- per request ----------------------------------------------------------------------------------------------

    def read(self, user_id: str, session_id: str) -> OnlineFeatures:
        """Features of one pair: one round trip."""
        return self.read_many([(user_id, session_id)])[0]

    def read_many(self, pairs: Sequence[tuple[str, str]], *, with_fold_state: bool = False) -> list[OnlineFeatures]:
        """Features of many (user_id, session_id) pairs: one round trip for the whole batch (fold states too, when
        asked for and the registry has the view)."""
        pairs = list(pairs)
        if not pairs:
            return []
        n_views = len(self._views)
        views = self._all_views if with_fold_state else self._views
        # One entity key per distinct id per view.
        keys: list[list[bytes]] = []
        key_index: list[list[int]] = []
        for view in views:
            seen: dict[str, int] = {}
            view_keys, index = [], []
            for pair in pairs:
                entity_id = pair[view.pair_index]
                slot = seen.get(entity_id)
                if slot is None:
                    slot = seen[entity_id] = len(view_keys)
                    view_keys.append(self._entity_key(view.join_key, entity_id))
                index.append(slot)
            keys.append(view_keys)
            key_index.append(index)

        # rows[v][slot] = (values tuple in view feature order, timestamp) or None when the view has no row
        rows = self._read_rows(keys)

        matrix = np.full((len(pairs), len(self.feature_names)), _NAN, dtype=np.float64)
        results = []
        for i in range(len(pairs)):
            stamps: dict[str, datetime | None] = {}
            missing = []
            for v in range(n_views):
                view = self._views[v]
                row = rows[v][key_index[v][i]]
                if row is None:
                    stamps[view.name] = None
                    missing.append(view.name)
                    continue
                values, stamp = row
                matrix[i, view.columns] = values
                stamps[view.name] = stamp
            state = None
            if len(views) > n_views and self._session_view is not None:
                row = rows[n_views][key_index[n_views][i]]
                if row is not None and row[1] == stamps.get(self._views[self._session_view].name):
                    state = _decode_fold_state(row[0])
            results.append(OnlineFeatures(matrix[i], stamps, tuple(missing), state))
        return results

    def _entity_key(self, join_key: str, entity_id: str) -> EntityKeyProto:
        if not isinstance(entity_id, str):
            raise TypeError(f"{join_key} must be a string, got {type(entity_id).__name__}")
        return EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=entity_id)])

    def _read_redis(self, keys: list[list[EntityKeyProto]]):
        redis_keys = [
            [_redis_key(self.project, ek, entity_key_serialization_version=self._key_version) for ek in view_keys]
            for view_keys in keys
        ]
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for v, view_keys in enumerate(redis_keys):
                    fields = self._fields[v]
                    for key in view_keys:
                        pipe.hmget(key, fields)
                replies = pipe.execute()
        except self._redis_errors as error:
            raise OnlineStoreUnavailable(
                f"online store {self._where} unreadable: {type(error).__name__}: {error}. "
                "Check that Redis runs and REDIS_URL points at it; scoring falls back meanwhile."
            ) from error
        rows, offset, n_model = [], 0, len(self._views)
        for v, view_keys in enumerate(redis_keys):
            view_rows = []
            for reply in replies[offset : offset + len(view_keys)]:
                ts_blob = reply[-1]
                if ts_blob is None:
                    view_rows.append(None)
                    continue
                stamp = Timestamp.FromString(ts_blob).ToDatetime(tzinfo=timezone.utc)
                blobs = reply[:-1]
                view_rows.append((tuple(_decode_value(b) for b in blobs) if v < n_model else tuple(blobs), stamp))
            rows.append(view_rows)
            offset += len(view_keys)
        return rows

    def _sqlite_connection(self) -> sqlite3.Connection:
        if self._sqlite is None:
            if not Path(self._db_path).exists():
                raise OnlineStoreUnavailable(f"online store {self._where} does not exist: materialise features first")
            uri = f"{Path(self._db_path).resolve().as_uri()}?mode=ro"
            self._sqlite = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=self.socket_timeout_s)
        return self._sqlite

    def _sqlite_sql(self, counts: tuple[int, ...]) -> str:
        sql = self._sql_cache.get(counts)
        if sql is None:
            parts = [
                f"SELECT {v}, entity_key, feature_name, value, event_ts FROM {self._quote(table)} "
                f"WHERE entity_key IN ({','.join('?' * n)})"
                for v, (table, n) in enumerate(zip(self._table_ids, counts))
                if n
            ]
            sql = " UNION ALL ".join(parts)
            if len(self._sql_cache) < 256:
                self._sql_cache[counts] = sql
        return sql

    def _read_sqlite(self, keys: list[list[EntityKeyProto]]):
        encoded = [
            [serialize_entity_key(ek, entity_key_serialization_version=self._key_version) for ek in view_keys]
            for view_keys in keys
        ]
        params = [k for view_keys in encoded for k in view_keys]
        sql = self._sqlite_sql(tuple(map(len, encoded)))
        n_model = len(self._views)
        try:
            with self._sqlite_lock:
                fetched = self._sqlite_connection().execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise OnlineStoreUnavailable(
                f"online store {self._where} unreadable: {type(error).__name__}: {error}. "
                "Materialise the feature views (feast apply + materialize) for this profile."
            ) from error
        slots = [{k: i for i, k in enumerate(view_keys)} for view_keys in encoded]
        values: list[list[list[float] | None]] = [[None] * len(view_keys) for view_keys in encoded]
        stamps: list[list[datetime | None]] = [[None] * len(view_keys) for view_keys in encoded]
        for v, entity_key, feature_name, blob, event_ts in fetched:
            feature_slot = self._feature_slot[v].get(feature_name)
            if feature_slot is None:
                continue  # a stored feature the service does not serve
            i = slots[v][entity_key]
            row = values[v][i]
            if row is None:
                row = values[v][i] = [_NAN if v < n_model else None] * len(self._all_views[v].features)
            row[feature_slot] = _decode_value(blob) if v < n_model else blob
            if event_ts is not None:
                stamps[v][i] = self._convert_ts(event_ts).replace(tzinfo=timezone.utc)
        return [
            [None if row is None else (tuple(row), stamps[v][i]) for i, row in enumerate(values[v])]
            for v in range(len(encoded))
        ]

    def close(self) -> None:
        if self.store_type == "redis":
            self._redis.close()
        elif self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None


def open_online_feature_reader(profile: str, *, redis_url: str | None = None, **kwargs) -> OnlineFeatureReader:
    """The reader of a platform profile (`local`: SQLite, `redis`: Redis at REDIS_URL, or `redis_url`)."""
    from propensity.feature_store import open_feature_store

    store = open_feature_store(profile, redis_url=redis_url, online_only=True)
    return OnlineFeatureReader(store, profile=profile, **kwargs)
