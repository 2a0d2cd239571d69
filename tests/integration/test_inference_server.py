"""The inference server over real HTTP: SageMaker contract, parity with the model, fallbacks, 4xx on bad input."""

import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import uvicorn

from feature_repo import FEAST_OBJECTS
from propensity.feature_store import open_feature_store
from propensity.features.definitions import FEATURE_SERVICE_NAME, MODEL_FEATURE_NAMES
from propensity.models.artifact import NO_INTERVENTION, ModelArtifact, load_artifact, write_artifact
from propensity.models.calibration_fit import choose_calibrator
from propensity.models.training import LightGBMSettings, fit_logistic_baseline, train_lightgbm
from serving.control.endpoint import free_port
from serving.decision import DecisionPolicy
from serving.online_features import open_online_feature_reader
from serving.scorer import Scorer
from serving.server import InferenceApp, InferenceLog
from tests.integration.test_feast import feature_lake  # noqa: F401 - the fixture: simulated traffic through Spark

pytestmark = pytest.mark.spark


def _serve(app) -> tuple[str, uvicorn.Server]:
    """The app under uvicorn in a thread, with the protocol and loop `run_server` uses in production."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", http="httptools", loop="uvloop"
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(200):
        if server.started:
            return f"http://127.0.0.1:{port}", server
        time.sleep(0.025)
    raise RuntimeError("the server did not start")


def materialise_and_train(users: pd.DataFrame, sessions: pd.DataFrame, model_dir: Path, policy: dict = NO_INTERVENTION):
    """The lake materialised into the local online store, and a small real model trained on its point-in-time
    features, with `policy` as its intervention policy: (artifact, store)."""
    store = open_feature_store("local")
    store.apply(FEAST_OBJECTS)
    start = min(users["feature_timestamp"].min(), sessions["event_timestamp"].min()).to_pydatetime()
    store.materialize(
        start_date=start, end_date=(sessions["event_timestamp"].max() + pd.Timedelta(days=2)).to_pydatetime()
    )
    # a small real model on the point-in-time features of every decision point
    entities = sessions[["session_id", "user_id", "event_timestamp"]].copy()
    entities["label"] = sessions.groupby("session_id")["purchases_so_far"].transform("max").gt(0).astype(int)
    frame = store.get_historical_features(
        entity_df=entities, features=store.get_feature_service(FEATURE_SERVICE_NAME)
    ).to_df()
    X, y = frame[list(MODEL_FEATURE_NAMES)], frame["label"].to_numpy()
    half = len(X) // 2
    booster = train_lightgbm(
        X[:half], y[:half], X[half:], y[half:], LightGBMSettings(min_data_in_leaf=20, max_rounds=60)
    )
    calibrator, _ = choose_calibrator(booster.predict(X[half:], raw_score=True), y[half:])
    artifact = load_artifact(
        write_artifact(
            model_dir,
            booster=booster,
            calibrator=calibrator,
            baseline=fit_logistic_baseline(X, y),
            features={"feature_service": FEATURE_SERVICE_NAME, "features": list(MODEL_FEATURE_NAMES)},
            training={"rows": len(X)},
            metrics={},
            policy=policy,
        )
    )
    return artifact, store


def with_policy(artifact: ModelArtifact, model_dir: Path, policy: dict) -> ModelArtifact:
    """The same trained model as a new artifact with another intervention policy."""
    return load_artifact(
        write_artifact(
            model_dir,
            booster=artifact.booster,
            calibrator=artifact.calibrator,
            baseline=artifact.baseline,
            features=artifact.features,
            training=artifact.training,
            metrics=artifact.metrics,
            policy=policy,
        )
    )


def online_feature_frame(store, pairs: pd.DataFrame) -> pd.DataFrame:
    """Feast's own online read of the pairs, in MODEL_FEATURE_NAMES order (float64, NaN where missing)."""
    frame = store.get_online_features(
        features=store.get_feature_service(FEATURE_SERVICE_NAME), entity_rows=pairs.to_dict("records")
    ).to_df()
    return frame[list(MODEL_FEATURE_NAMES)].astype("float64")


@pytest.fixture
def served(feature_lake, tmp_path):  # noqa: F811
    users, sessions = feature_lake
    artifact, store = materialise_and_train(users, sessions, tmp_path / "model")
    log = InferenceLog(tmp_path / "inference.log")
    app = InferenceApp(Scorer(artifact, open_online_feature_reader("local")), log)
    url, server = _serve(app)
    yield url, artifact, store, sessions, log
    server.should_exit = True


def test_ping_single_and_batch_scores_equal_the_model_on_feast_features(served):
    url, artifact, store, sessions, log = served
    assert requests.get(f"{url}/ping", timeout=5).status_code == 200
    pairs = sessions.drop_duplicates("session_id")[["user_id", "session_id"]].head(25)
    expected = artifact.predict(online_feature_frame(store, pairs))

    one = requests.post(f"{url}/invocations", json=pairs.iloc[0].to_dict(), timeout=5)
    assert one.status_code == 200
    body = one.json()
    assert body["propensity"] == pytest.approx(expected[0], abs=1e-9)
    assert body["fallback"] is False and body["model_version"] == artifact.version and body["variant"] == "champion"
    assert set(body["feature_age_s"]) == {"user_history", "session_activity"}
    # no intervention policy in this artifact: no one treated, no one held out
    assert body["decision"] == {"treated": False, "holdout": False, "offer": None, "treatment_probability": 0.0}

    batch = requests.post(f"{url}/invocations", json={"instances": pairs.to_dict("records")}, timeout=5).json()[
        "predictions"
    ]
    assert np.allclose([p["propensity"] for p in batch], expected, atol=1e-9, rtol=0)

    unknown = requests.post(
        f"{url}/invocations", json={"session_id": "never-seen", "user_id": pairs.iloc[0]["user_id"]}, timeout=5
    ).json()
    assert unknown["fallback"] is True and "session_activity" in unknown["fallback_reason"]
    assert 0 < unknown["propensity"] < 1

    metrics = requests.get(f"{url}/metrics", timeout=5).text
    assert "propensity_request_seconds_bucket" in metrics and "propensity_fallbacks_total" in metrics
    log.flush()
    lines = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert len(lines) == 1 + len(pairs) + 1 and all("request_id" in line and "propensity" in line for line in lines)
    assert all(set(line["features"]) == set(MODEL_FEATURE_NAMES) and "decision" in line for line in lines)


def test_each_prediction_carries_the_features_it_used_and_the_policy_decision(served, tmp_path):
    _, artifact, store, sessions, _ = served
    pairs = sessions.drop_duplicates("session_id")[["user_id", "session_id"]].head(100)
    features = online_feature_frame(store, pairs)
    scores = artifact.predict(features)
    # half the rows clear the threshold; 30 % of sessions are held out
    policy = {"threshold": float(np.median(scores)), "holdout_share": 0.3, "offer": "discount", "economics": None}
    log = InferenceLog(tmp_path / "policy.log")
    url, server = _serve(
        InferenceApp(
            Scorer(with_policy(artifact, tmp_path / "model", policy), open_online_feature_reader("local")), log
        )
    )
    try:
        response = requests.post(f"{url}/invocations", json={"instances": pairs.to_dict("records")}, timeout=5)
    finally:
        server.should_exit = True
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    served_features = np.array(
        [
            [np.nan if p["features"][name] is None else p["features"][name] for name in MODEL_FEATURE_NAMES]
            for p in predictions
        ]
    )
    assert [list(p["features"]) for p in predictions[:1]] == [list(MODEL_FEATURE_NAMES)]
    np.testing.assert_array_equal(served_features, features.to_numpy())
    assert np.isnan(served_features).any()  # a never-ordered user's null feature is served as null
    decide = DecisionPolicy(policy).decide
    decisions = [p["decision"] for p in predictions]
    assert decisions == [decide(p["session_id"], p["propensity"]).as_dict() for p in predictions]
    treated = [d for d in decisions if d["treated"]]
    held = [d for d in decisions if d["holdout"]]
    assert treated and held and all(d["offer"] == "discount" and d["treatment_probability"] == 0.7 for d in treated)
    assert all(not d["treated"] and d["offer"] is None for d in held)
    assert {d["treatment_probability"] for d in decisions} == {0.0, 0.7}
    log.flush()
    logged = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [(row["decision"], row["features"]) for row in logged] == [
        (p["decision"], p["features"]) for p in predictions
    ]


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        (b"{not json", {"content-type": "application/json"}, 400, "not valid JSON"),
        (b'{"session_id": 1, "user_id": "u"}', {"content-type": "application/json"}, 422, "non-empty string"),
        (b'{"session_id": "s", "user_id": "u", "extra": true}', {"content-type": "application/json"}, 422, "unknown"),
        (
            json.dumps({"instances": [{"session_id": "s", "user_id": "u"}] * 101}).encode(),
            {"content-type": "application/json"},
            413,
            "exceeds the limit of 100",
        ),
        (b"s,u", {"content-type": "text/csv"}, 415, "send application/json"),
        # measured on main before the fix: 500 UnicodeEncodeError from the online store's key encoding
        (b'{"session_id": "\\ud800", "user_id": "u1"}', {}, 422, "session_id cannot be encoded as UTF-8"),
        # measured on main before the fix: 500 RecursionError
        (b"[" * 100_000 + b"]" * 100_000, {}, 400, "nested too deeply"),
    ],
)
def test_bad_input_gets_a_4xx_with_a_message(served, body, headers, status, says):
    url = served[0]
    response = requests.post(f"{url}/invocations", data=body, headers=headers, timeout=5)
    assert response.status_code == status
    assert says in response.json()["error"]
    assert requests.get(f"{url}/ping", timeout=5).status_code == 200  # still up


def _send_and_read(url: str, head: bytes, body_part: bytes, timeout_s: float = 5.0) -> tuple[bytes, float | None, bool]:
    """Send request headers and the first part of a body over a raw socket, then read until the server closes:
    (what came back, seconds until the answer started, whether the server closed the connection)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        started = time.monotonic()
        sock.sendall(head + body_part)
        answer, answered_after, closed = b"", None, False
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:  # closed with our unread bytes in its buffer: a reset after the answer
                closed = True
                break
            except TimeoutError:
                break
            if answered_after is None:
                answered_after = time.monotonic() - started
            if not chunk:
                closed = True
                break
            answer += chunk
    return answer, answered_after, closed


@pytest.mark.parametrize(
    ("framing", "first_part"),
    [
        # headers declaring 200 MB, then 4 KB of it: refused on the headers (main read all 200 MB first, for 46 s)
        (b"Content-Length: 200000000", b"x" * 4096),
        # no length up front: refused as soon as the running total passes the limit, with the rest never sent
        (b"Transfer-Encoding: chunked", b"".join(b"%x\r\n%s\r\n" % (8192, b" " * 8192) for _ in range(40))),
    ],
)
def test_an_oversized_body_is_refused_at_once_without_being_read(served, framing, first_part):
    url = served[0]
    head = b"POST /invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" + framing
    answer, answered_after, closed = _send_and_read(url, head + b"\r\n\r\n", first_part)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large", answer[:300]
    response_headers, _, body = rest.partition(b"\r\n\r\n")
    assert "exceeds" in json.loads(body)["error"]
    assert b"connection: close" in response_headers.lower()
    assert answered_after is not None and answered_after < 5.0  # loose: it is milliseconds, but CI is slow
    assert closed, "the server must close the connection rather than go on reading the body"
    assert requests.get(f"{url}/ping", timeout=5).status_code == 200  # still up


def test_online_store_down_degrades_to_a_fallback_not_an_error(served):
    _, artifact, _, sessions, log = served
    nothing_listens = "redis://127.0.0.1:6390/15"
    app = InferenceApp(Scorer(artifact, open_online_feature_reader("redis", redis_url=nothing_listens)), log)
    url, server = _serve(app)
    try:
        pair = sessions.iloc[0][["user_id", "session_id"]].to_dict()
        response = requests.post(f"{url}/invocations", json=pair, timeout=5)
        assert response.status_code == 200
        body = response.json()
        assert body["fallback"] is True and "online store unavailable" in body["fallback_reason"]
        assert 0 < body["propensity"] < 1
    finally:
        server.should_exit = True


def _event_json(row) -> dict:
    return {
        "event_id": row.event_id,
        "event_time": row.event_time.isoformat(),
        "event_type": row.event_type,
        "product_id": None if pd.isna(row.product_id) else row.product_id,
        "category_id": None if pd.isna(row.category_id) else row.category_id,
        "price": None if pd.isna(row.price) else float(row.price),
        "quantity": None if pd.isna(row.quantity) else int(row.quantity),
        "source": row.source,
    }


def test_a_requests_own_events_are_folded_onto_the_online_row(served):
    """A materialised session (the online row is its last decision point), asked with its last events again plus
    three new ones: the new ones are folded, the others ignored, and the score is the model's on the pandas fold of
    the whole session with the new events. A session the store has never seen is scored from its events alone."""
    from propensity.contract import validate_events
    from propensity.features.definitions import SESSION_FEATURE_NAMES
    from propensity.features.session import fold_session_events
    from propensity.sources.simulator import simulate_traffic

    url, artifact, store, sessions, _ = served
    events = validate_events(simulate_traffic(n_users=120, days=4, seed=3).events).valid
    sizes = events.groupby("session_id").size()
    session_id = sizes[sizes >= 4].index[0]
    mine = events[events["session_id"] == session_id].sort_values(["event_time", "event_id"])
    user_id = mine["user_id"].iloc[0]
    last = mine.iloc[-1]
    new = pd.DataFrame(
        [
            {**last.to_dict(), "event_id": f"new-{i}", "event_type": kind, "event_time": last["event_time"] + gap}
            for i, (kind, gap) in enumerate(
                [
                    ("add_to_cart", pd.Timedelta(0)),
                    ("product_view", pd.Timedelta(seconds=7)),
                    ("search", pd.Timedelta(seconds=7)),
                ]
            )
        ]
    )
    new.loc[1, "product_id"] = "a-product-never-seen"
    sent = [_event_json(r) for r in pd.concat([mine.iloc[-3:], new]).itertuples(index=False)]
    answer = requests.post(
        f"{url}/invocations", json={"session_id": session_id, "user_id": user_id, "events": sent}, timeout=5
    ).json()

    assert answer["request_events"]["folded"] == ["new-0", "new-1", "new-2"]
    assert [i["event_id"] for i in answer["request_events"]["ignored"]] == list(mine["event_id"].iloc[-3:])
    assert answer["request_events"]["not_folded_reason"] is None and answer["fallback"] is False
    everything = pd.concat([mine, new]).sort_values(["event_time", "event_id"], kind="stable").reset_index(drop=True)
    rows, _ = fold_session_events(everything)
    expected = rows.iloc[-1]
    for name in SESSION_FEATURE_NAMES:
        assert answer["features"][name] == pytest.approx(float(expected[name]), abs=1e-9), name
    online = online_feature_frame(store, pd.DataFrame([{"user_id": user_id, "session_id": session_id}]))
    for name in SESSION_FEATURE_NAMES:
        online[name] = float(expected[name])
    assert answer["propensity"] == pytest.approx(artifact.predict(online)[0], abs=1e-9)
    assert answer["feature_age_s"]["session_activity"] == pytest.approx(
        (pd.Timestamp.now(tz="UTC") - new["event_time"].max()).total_seconds(), abs=5
    )

    # Nothing new: the online row as it is.
    same = requests.post(
        f"{url}/invocations", json={"session_id": session_id, "user_id": user_id, "events": sent[:3]}, timeout=5
    ).json()
    plain = requests.post(f"{url}/invocations", json={"session_id": session_id, "user_id": user_id}, timeout=5).json()
    assert same["request_events"]["folded"] == [] and same["propensity"] == plain["propensity"]
    assert "request_events" not in plain

    # A session the online store has never seen: its events are all there is.
    fresh = [{**e, "event_id": f"f{i}"} for i, e in enumerate(sent)]
    unseen = requests.post(
        f"{url}/invocations", json={"session_id": "a-new-session", "user_id": user_id, "events": fresh}, timeout=5
    ).json()
    assert unseen["request_events"]["folded"] == sorted(
        (e["event_id"] for e in fresh), key=lambda i: (fresh[int(i[1:])]["event_time"], i)
    )
    assert unseen["fallback"] is False and unseen["features"]["session_events"] == len(fresh)
