"""The decision-log assets on real data: a real server's inference log (a trained model with an intervention policy
on Feast's local online store), hand-made sessions in the lake around its decisions, and SageMaker Data Capture in
S3 (moto) in the service's own layout and record format."""

import json
import time
from datetime import date

import boto3
import dagster as dg
import numpy as np
import pandas as pd
import pytest
import requests
from moto import mock_aws

from propensity.features.definitions import MODEL_FEATURE_NAMES
from propensity.monitoring.decisions import decisions_from_data_capture, on_day
from propensity.settings import Settings
from propensity_assets import decisions as decision_assets
from resources.lake import LakeResource
from serving.control.data_capture import CAPTURE_PREFIX, DataCaptureReader
from serving.endpoint_state import EndpointFiles
from serving.online_features import open_online_feature_reader
from serving.scorer import Scorer
from serving.server import InferenceApp, InferenceLog
from tests.conftest import contract_events
from tests.integration.test_feast import feature_lake  # noqa: F401 - fixtures: simulated features through Spark,
from tests.integration.test_inference_server import (  # and a real server on SQLite over them
    _serve,
    online_feature_frame,
    served,  # noqa: F401
    with_policy,
)
from tests.unit.test_decisions import _capture, _prediction

REGION = "eu-west-1"
BUCKET = "propensity-capture-test"
ENDPOINT = "decision-test"


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    materialisation = result.asset_materializations_for_node(asset)[0]
    return {key: getattr(value, "value", value) for key, value in materialisation.metadata.items()}


@pytest.mark.spark
def test_decision_assets_from_a_real_servers_log_and_sessions_in_the_lake(served):  # noqa: F811
    _, artifact, store, sessions, _ = served
    pairs = sessions.drop_duplicates("session_id")[["user_id", "session_id"]].head(40).reset_index(drop=True)
    scores = artifact.predict(online_feature_frame(store, pairs))
    policy = {"threshold": float(np.median(scores)), "holdout_share": 0.3, "offer": "discount", "economics": None}
    files = EndpointFiles(ENDPOINT)
    log = InferenceLog(files.inference_log)
    model = with_policy(artifact, files.dir / "model", policy)
    url, server = _serve(InferenceApp(Scorer(model, open_online_feature_reader("local")), log))
    try:
        for pair in pairs.head(30).to_dict("records"):
            assert requests.post(f"{url}/invocations", json=pair, timeout=5).status_code == 200
        batch = {"instances": pairs.tail(10).to_dict("records")}
        assert requests.post(f"{url}/invocations", json=batch, timeout=5).status_code == 200
        assert requests.post(f"{url}/invocations", json={"session_id": "s"}, timeout=5).status_code == 422
    finally:
        server.should_exit = True
    scored_until = pd.Timestamp(time.time(), unit="s", tz="UTC").floor("us")  # after every decision was logged
    log.flush()
    with open(files.inference_log, "a") as handle:
        handle.write('{"request_id": "torn", "ts": 17\n')  # a torn line: quarantined, the rest is read
    logged = [json.loads(line) for line in files.inference_log.read_text().splitlines()[:-1]]
    day = pd.Timestamp(logged[0]["ts"], unit="s", tz="UTC").strftime("%Y-%m-%d")
    on_the_day = [
        r
        for r in logged
        if r["status"] == 200 and pd.Timestamp(r["ts"], unit="s", tz="UTC").strftime("%Y-%m-%d") == day
    ]

    lake = LakeResource()
    result = dg.materialize(
        [decision_assets.decision_log],
        partition_key=day,
        resources={"lake": lake},
        run_config={"ops": {"decision_log": {"config": {"endpoint": ENDPOINT}}}},
        raise_on_error=True,
    )
    meta = _metadata(result, "decision_log")
    assert meta["dagster/row_count"] == len(on_the_day) and meta["errors_in_source"] == 1
    assert meta["quarantined_in_source"] == 1 and meta["source"] == str(files.inference_log)
    assert _check(result, "no_duplicate_decisions").passed and _check(result, "holdout_never_treated").passed
    assert not _check(result, "every_log_line_read").passed  # the torn line, as a warning
    decisions = pd.read_parquet(decision_assets.partition_file(lake, "decision_log", day))
    assert list(decisions["request_id"]) == [r["request_id"] for r in on_the_day]
    assert str(decisions["decided_at"].dtype) == "datetime64[us, UTC]"
    assert (
        decisions["treated"].any() and decisions["holdout"].any() and set(decisions["model_version"]) == {model.version}
    )
    np.testing.assert_array_equal(
        decisions[list(MODEL_FEATURE_NAMES)].to_numpy(),
        np.array(
            [
                [np.nan if r["features"][n] is None else r["features"][n] for n in MODEL_FEATURE_NAMES]
                for r in on_the_day
            ]
        ),
    )

    # The sessions in the lake, consistent with the state each decision was scored on (its online session_events):
    # the first ten buy after every decision, two bought before theirs (the purchase is among the events their
    # state had folded), the rest browse, and the last one never reached the lake.
    decided = decisions.set_index("session_id")["decided_at"]
    seen = decisions.set_index("session_id")["session_events"].fillna(0).astype(int)
    buyers, bought_before, browsers = list(decided.index[:10]), list(decided.index[10:12]), list(decided.index[12:-1])
    users = dict(zip(pairs["session_id"], pairs["user_id"]))
    rows = []
    for session in [*buyers, *browsers]:
        for k in range(max(seen[session], 1)):
            rows.append((session, decided[session] - pd.Timedelta(minutes=10 - k * 0.01), "page_view", None))
    for session in bought_before:
        for k in range(seen[session] - 1):
            rows.append((session, decided[session] - pd.Timedelta(minutes=10 - k * 0.01), "page_view", None))
    rows += [(session, scored_until, "purchase", 12.5) for session in buyers]
    rows += [(session, decided[session] - pd.Timedelta(minutes=1), "purchase", 3.0) for session in bought_before]
    events = contract_events(
        [
            {"event_id": f"e{i}", "session_id": s, "user_id": users[s], "event_time": t, "event_type": kind}
            | ({"price": price, "quantity": 2} if price else {})
            for i, (s, t, kind, price) in enumerate(rows)
        ]
    )
    with lake.replace("session_events") as table:
        events.to_parquet(table / "part-0.parquet", index=False)

    labelled_run = dg.materialize(
        [decision_assets.labelled_decisions],
        partition_key=day,
        resources={"lake": lake},
        run_config={"ops": {"labelled_decisions": {"config": {"maturity_s": 0.0}}}},
        raise_on_error=True,
    )
    labelled = pd.read_parquet(decision_assets.partition_file(lake, "labelled_decisions", day)).set_index("session_id")
    meta = _metadata(labelled_run, "labelled_decisions")
    assert meta["left_out_after_purchase"] == 2 and meta["without_session_in_lake"] == 1
    assert meta["waiting_for_maturity"] == 0 and meta["as_of"] == scored_until.isoformat()
    assert set(labelled.index) == set(buyers) | set(browsers)
    assert labelled.loc[buyers, "label"].eq(1).all() and labelled.loc[browsers, "label"].eq(0).all()
    assert labelled.loc[buyers, "revenue"].eq(25.0).all() and labelled.loc[browsers, "revenue"].eq(0.0).all()
    waited = (scored_until - decided[buyers]).dt.total_seconds()
    np.testing.assert_allclose(labelled.loc[buyers, "time_to_purchase_s"], waited, rtol=0, atol=1e-6)
    pd.testing.assert_frame_equal(
        labelled[list(MODEL_FEATURE_NAMES)],
        decisions.set_index("session_id").loc[labelled.index, list(MODEL_FEATURE_NAMES)],
    )
    assert _check(labelled_run, "decisions_find_their_sessions").passed  # 1 of 40 unmatched, within 5 %

    outcomes_run = dg.materialize(
        [decision_assets.session_outcomes_asset], partition_key=day, resources={"lake": lake}, raise_on_error=True
    )
    outcomes = pd.read_parquet(decision_assets.partition_file(lake, "session_outcomes", day))
    started = events.groupby("session_id")["event_time"].min()
    assert set(outcomes["session_id"]) == set(started[started.dt.strftime("%Y-%m-%d") == day].index)
    assert _metadata(outcomes_run, "session_outcomes")["dagster/row_count"] == len(outcomes)


def _put_capture(s3, key: str, lines: list) -> None:
    body = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    s3.put_object(Bucket=BUCKET, Key=f"{CAPTURE_PREFIX}/{key}", Body=body.encode())


@pytest.fixture
def capture_bucket(monkeypatch):
    """moto's S3 with fake credentials and one endpoint's Data Capture objects around 2026-03-02 (UTC)."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    request = {"session_id": "s", "user_id": "u"}
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        batch = {"predictions": [_prediction("s2", 0.1), _prediction("s3", 0.4, treated=True)]}
        _put_capture(
            s3,
            "propensity-prod/champion/2026/03/02/10/10-00-00-000-aaaa.jsonl",
            [
                _capture("e1", request, _prediction("s1", 0.2), when="2026-03-02T10:00:01Z"),
                _capture("e2", {"instances": []}, batch, encoding="BASE64", when="2026-03-02T10:00:02.5Z"),
            ],
        )
        _put_capture(
            s3,
            "propensity-prod/canary/2026/03/02/23/23-59-00-000-bbbb.jsonl",
            [
                _capture("e3", request, _prediction("s4", 0.3, holdout=True), when="2026-03-02T23:59:58Z"),
                '{"captureData": {"endpointInput"',  # cut short
                _capture("e4", request, _prediction("s5", 0.3), when="2026-03-03T00:00:01Z"),  # the next day's
            ],
        )
        _put_capture(  # written in the next day's first hour, inferred on the day
            s3,
            "propensity-prod/champion/2026/03/03/00/00-00-05-000-cccc.jsonl",
            [_capture("e5", request, _prediction("s6", 0.3), when="2026-03-02T23:59:59.5Z")],
        )
        _put_capture(
            s3,
            "propensity-prod/champion/2026/03/03/01/x.jsonl",
            [_capture("e6", request, _prediction("s7", 0.1), when="2026-03-03T01:00:05Z")],
        )
        _put_capture(
            s3, "propensity-other/champion/2026/03/02/10/y.jsonl", [_capture("e7", request, _prediction("s8", 0.1))]
        )
        yield s3


def test_a_days_data_capture_is_read_from_s3_in_sagemakers_layout(capture_bucket):
    reader = DataCaptureReader(bucket=BUCKET, region=REGION)  # its own client: timeouts and retries configured
    assert reader.variants("propensity-prod") == ["canary", "champion"]
    keys = reader.object_keys("propensity-prod", date(2026, 3, 2))
    assert [key.split("/")[-1] for key in keys] == [
        "23-59-00-000-bbbb.jsonl",
        "10-00-00-000-aaaa.jsonl",
        "00-00-05-000-cccc.jsonl",
    ]
    read = decisions_from_data_capture(reader.records("propensity-prod", date(2026, 3, 2)), "propensity-prod")
    frame = on_day(read, "decided_at", "2026-03-02")
    assert sorted(zip(frame["request_id"], frame["session_id"])) == [
        ("e1", "s1"),
        ("e2", "s2"),
        ("e2", "s3"),
        ("e3", "s4"),
        ("e5", "s6"),
    ]
    assert list(frame.set_index("session_id").loc[["s3", "s4"], "treated"]) == [True, False]
    assert frame.set_index("session_id").loc["s4", "holdout"] and len(frame.attrs["quarantine"]) == 1


def test_the_decision_log_asset_reads_data_capture_when_sagemaker_deploys(capture_bucket, monkeypatch, propensity_home):
    sagemaker = Settings.from_env(
        {
            "PROPENSITY_HOME": str(propensity_home),
            "PROPENSITY_DEPLOYER": "sagemaker",
            "SAGEMAKER_BUCKET": BUCKET,
            "SAGEMAKER_IMAGE_URI": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/propensity:1",
            "SAGEMAKER_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/propensity",
            "SAGEMAKER_REGION": REGION,
        }
    )
    monkeypatch.setattr(decision_assets, "settings", lambda: sagemaker)
    lake = LakeResource()
    result = dg.materialize(
        [decision_assets.decision_log],
        partition_key="2026-03-02",
        resources={"lake": lake},
        run_config={"ops": {"decision_log": {"config": {"endpoint": "propensity-prod"}}}},
        raise_on_error=True,
    )
    meta = _metadata(result, "decision_log")
    assert meta["dagster/row_count"] == 5 and meta["quarantined_in_source"] == 1
    assert meta["source"] == f"s3://{BUCKET}/{CAPTURE_PREFIX}/propensity-prod/"
    frame = pd.read_parquet(decision_assets.partition_file(lake, "decision_log", "2026-03-02"))
    assert frame["latency_ms"].isna().all() and set(frame["endpoint"]) == {"propensity-prod"}
    assert frame["decided_at"].min() == pd.Timestamp("2026-03-02T10:00:01Z")
    assert _check(result, "no_duplicate_decisions").passed
    # the next day (e4 filed under the day before's last hour, and e6) shows no offer at all, an all-null text
    # column: the days still read back as one table
    dg.materialize(
        [decision_assets.decision_log],
        partition_key="2026-03-03",
        resources={"lake": lake},
        run_config={"ops": {"decision_log": {"config": {"endpoint": "propensity-prod"}}}},
        raise_on_error=True,
    )
    both = pd.read_parquet(lake.pull("decision_log"))
    assert both.groupby("date", observed=True).size().to_dict() == {"2026-03-02": 5, "2026-03-03": 2}
    assert both["offer"].dropna().eq("discount").sum() == 1
