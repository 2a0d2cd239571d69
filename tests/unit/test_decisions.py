"""Intervention decisions (holdout by session hash, threshold, logged treatment probability), the decision frame read
from inference-log lines and SageMaker Data Capture records, session outcomes and labels on hand-made sessions."""

import base64
import json

import numpy as np
import pandas as pd
import pytest

from propensity.features.definitions import MODEL_FEATURE_NAMES
from propensity.models.artifact import NO_INTERVENTION
from propensity.monitoring.decisions import (
    DECISION_COLUMNS,
    LABELLED_COLUMNS,
    OUTCOME_COLUMNS,
    READ_ERRORS,
    READ_QUARANTINE,
    decisions_from_data_capture,
    decisions_from_inference_log,
    label_decisions,
    on_day,
    session_outcomes,
)
from serving.decision import Decision, DecisionPolicy, holdout_draw
from tests.conftest import contract_events, utc

POLICY = {"threshold": 0.2, "holdout_share": 0.25, "offer": "discount", "economics": {"margin": 0.3}, "lift": {}}


def test_no_intervention_treats_no_one_and_holds_out_no_one():
    policy = DecisionPolicy(NO_INTERVENTION)
    for session in ("s1", "s2", "s3"):
        for score in (0.0, 0.5, 1.0):
            assert policy.decide(session, score) == Decision(False, False, None, 0.0)


def test_holdout_is_a_stable_share_of_sessions_independent_of_the_score():
    policy = DecisionPolicy(POLICY)
    sessions = [f"s-u{i}-{1_700_000_000_000 + i}" for i in range(20_000)]
    held = np.array([policy.is_holdout(s) for s in sessions])
    # binomial(20000, 0.25): sd 0.0031, so 0.25 +/- 0.015 is about 5 sd
    assert abs(held.mean() - 0.25) < 0.015
    # the same session is in the same arm whatever its score, at every request
    for session, is_held in zip(sessions[:500], held[:500]):
        arms = {policy.decide(session, score).holdout for score in (0.0, 0.19, 0.2, 0.9)}
        assert arms == {bool(is_held)}
    # the integer comparison agrees with the documented uniform draw
    assert all((holdout_draw(s) < 0.25) == h for s, h in zip(sessions, held))
    draws = np.array([holdout_draw(s) for s in sessions])
    assert 0.0 <= draws.min() and draws.max() < 1.0 and abs(np.median(draws) - 0.5) < 0.02


def test_treatment_and_its_logged_probability_follow_the_threshold_and_the_holdout():
    policy = DecisionPolicy(POLICY)
    sessions = [f"s{i}" for i in range(2_000)]
    held = [s for s in sessions if policy.is_holdout(s)]
    kept = [s for s in sessions if not policy.is_holdout(s)]
    assert held and kept
    assert policy.decide(kept[0], 0.2) == Decision(True, False, "discount", 0.75)  # at the threshold: treated
    assert policy.decide(kept[0], 0.1999) == Decision(False, False, None, 0.0)
    # held out: never treated, but the logged probability is the policy's, which treats 75 % of such rows
    assert policy.decide(held[0], 0.9) == Decision(False, True, None, 0.75)
    assert policy.decide(held[0], 0.1) == Decision(False, True, None, 0.0)
    # the logged probability is exact: among rows that clear the threshold, the treated share is about 0.75
    treated = np.mean([policy.decide(s, 0.5).treated for s in sessions])
    assert abs(treated - 0.75) < 0.04


def test_exploration_treats_a_stable_share_below_the_threshold_and_logs_its_exact_probability():
    policy = DecisionPolicy({**POLICY, "exploration_share": 0.1})
    sessions = [f"s-{i}" for i in range(40_000)]
    below = [policy.decide(s, 0.05) for s in sessions]
    treated = np.array([d.treated for d in below])
    held = np.array([d.holdout for d in below])
    assert not (treated & held).any()
    # (1 - 0.25) * 0.1 = 0.075 of all sessions: binomial sd 0.0013
    assert abs(treated.mean() - 0.075) < 0.006
    assert all(d.treatment_probability == pytest.approx(0.075) for d in below)
    assert {d.offer for d, t in zip(below, treated) if t} == {"discount"}
    # the exploring draw is independent of the holdout draw: the explored share of kept sessions is the configured one
    assert abs(treated[~held].mean() - 0.1) < 0.008
    # sticky per session, and above the threshold nothing changes
    assert all(policy.decide(s, 0.01).treated == t for s, t in zip(sessions[:300], treated[:300]))
    assert policy.decide(sessions[0], 0.5) == DecisionPolicy(POLICY).decide(sessions[0], 0.5)
    # no threshold: nothing is offered, so nothing is explored either
    assert not any(
        DecisionPolicy({**NO_INTERVENTION, "exploration_share": 0.5}).decide(s, 0.9).treated for s in sessions[:200]
    )


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        ({"threshold": 1.5, "holdout_share": 0.1, "offer": "x"}, "threshold must be a probability"),
        ({"threshold": 0.1, "holdout_share": 1.0, "offer": "x"}, "holdout_share must be in [0, 1)"),
        ({"threshold": 0.1, "holdout_share": -0.1, "offer": "x"}, "holdout_share must be in [0, 1)"),
        ({"threshold": 0.1, "holdout_share": 0.1, "offer": None}, "needs an offer"),
        ({"threshold": 0.1, "exploration_share": 1.0, "offer": "x"}, "exploration_share must be in [0, 1)"),
    ],
)
def test_a_policy_that_cannot_be_applied_is_refused_at_load(policy, says):
    with pytest.raises(ValueError, match=says.replace("[", r"\[").replace(")", r"\)")):
        DecisionPolicy(policy)


# -- the decision frame -----------------------------------------------------------------------------------------------


def _prediction(session: str, propensity: float, *, treated: bool = False, holdout: bool = False, **extra) -> dict:
    features = {name: float(i) for i, name in enumerate(MODEL_FEATURE_NAMES)}
    features["user_days_since_last_order"] = None
    return {
        "session_id": session,
        "user_id": f"u-{session}",
        "propensity": propensity,
        "model_version": "v0001-abc",
        "variant": "champion",
        "feature_age_s": {"user_history": 10.0, "session_activity": None},
        "fallback": False,
        "fallback_reason": None,
        "features": features,
        "decision": {
            "treated": treated,
            "holdout": holdout,
            "offer": "discount" if treated else None,
            "treatment_probability": 0.75 if treated or holdout else 0.0,
        },
    } | extra


def _log_line(prediction: dict, request_id: str, ts: float, status: int = 200) -> str:
    return json.dumps({"request_id": request_id, "ts": ts, "status": status, "latency_ms": 0.8, **prediction})


def test_inference_log_lines_become_the_decision_frame_and_bad_lines_are_quarantined_not_fatal():
    ts = utc("2026-03-02 10:00:00").timestamp()
    lines = [
        _log_line(_prediction("s1", 0.3, treated=True), "r1", ts),
        _log_line(_prediction("s2", 0.1, holdout=True), "r2", ts + 1.5),
        json.dumps({"request_id": "r3", "ts": ts, "status": 422, "variant": "champion", "error": "bad"}),
        "",
        '{"request_id": "r4", "ts": 1, "sta',  # cut short
        _log_line(_prediction("s5", 1.7), "r5", ts),  # not a probability
        _log_line({k: v for k, v in _prediction("s6", 0.2).items() if k != "decision"}, "r6", ts),  # pre-decision
        _log_line(_prediction("s7", 0.2, features={"nope": 1.0}), "r7", ts),
        b'{"request_id": "r8", "session_id": "\xff"}',
        "[" * 100_000 + "]" * 100_000,
    ]
    frame = decisions_from_inference_log(lines, "propensity")
    assert list(frame.columns) == list(DECISION_COLUMNS)
    assert {c: str(t) for c, t in frame.dtypes.items()} == {
        c: str(pd.Series(dtype=t).dtype) for c, t in DECISION_COLUMNS.items()
    }
    assert list(frame["request_id"]) == ["r1", "r2"] and set(frame["endpoint"]) == {"propensity"}
    first = frame.iloc[0]
    assert first["decided_at"] == utc("2026-03-02 10:00:00") and first["latency_ms"] == 0.8
    assert (first["treated"], first["holdout"], first["offer"], first["treatment_probability"]) == (
        True,
        False,
        "discount",
        0.75,
    )
    assert first["session_events"] == float(MODEL_FEATURE_NAMES.index("session_events"))
    assert np.isnan(first["user_days_since_last_order"])
    assert frame.iloc[1]["decided_at"] == utc("2026-03-02 10:00:01.5")
    assert frame.attrs[READ_ERRORS] == 1
    reasons = {q["where"]: q["reason"] for q in frame.attrs[READ_QUARANTINE]}
    assert set(reasons) == {"line 5", "line 6", "line 7", "line 8", "line 9", "line 10"}
    assert "JSONDecodeError" in reasons["line 5"] and "not a probability" in reasons["line 6"]
    assert "decision must be an object" in reasons["line 7"] and "unknown name(s) ['nope']" in reasons["line 8"]
    assert "UnicodeDecodeError" in reasons["line 9"] and "RecursionError" in reasons["line 10"]


def test_a_missing_inference_log_holds_no_decisions(tmp_path):
    frame = decisions_from_inference_log(tmp_path / "inference.log", "propensity")
    assert frame.empty and list(frame.columns) == list(DECISION_COLUMNS)
    assert str(frame["decided_at"].dtype) == "datetime64[us, UTC]"


def _capture(event_id: str, request: object, response: object, encoding: str = "JSON", when: str = "") -> dict:
    """One line of SageMaker Data Capture as the service writes it (captureData, eventMetadata, eventVersion)."""

    def payload(body: object, mode: str) -> dict:
        text = json.dumps(body)
        data = base64.b64encode(text.encode()).decode() if encoding == "BASE64" else text
        return {"observedContentType": "application/json", "mode": mode, "data": data, "encoding": encoding}

    return {
        "captureData": {"endpointInput": payload(request, "INPUT"), "endpointOutput": payload(response, "OUTPUT")},
        "eventMetadata": {"eventId": event_id, "inferenceTime": when or "2026-03-02T10:00:05Z"},
        "eventVersion": "0",
    }


def test_data_capture_records_in_every_encoding_become_the_same_decision_frame():
    single = _prediction("s1", 0.3, treated=True)
    batch = {"predictions": [_prediction("s2", 0.1), _prediction("s3", 0.25, holdout=True)]}
    records = [
        _capture("e1", {"session_id": "s1", "user_id": "u-s1"}, single),
        _capture("e2", {"instances": []}, batch, encoding="BASE64", when="2026-03-02T10:00:06.250Z"),
        _capture("e3", {"session_id": "x", "user_id": "y"}, {"error": "request.session_id ..."}),
        b'{"captureData": ',  # a line that is not JSON, as the S3 reader hands it over
        _capture("e5", {}, single, encoding="CSV"),  # CSV encoding: the body as text
        _capture("e6", {}, single, encoding="GZIP"),
        {"captureData": {}, "eventMetadata": {"eventId": "e7", "inferenceTime": "2026-03-02T10:00:05Z"}},
        "a raw line that is not JSON",
    ]
    frame = decisions_from_data_capture(records, "propensity-prod")
    assert list(frame.columns) == list(DECISION_COLUMNS)
    assert list(frame["request_id"]) == ["e1", "e2", "e2", "e5"]
    assert list(frame["session_id"]) == ["s1", "s2", "s3", "s1"]
    assert frame["decided_at"].tolist() == [utc("2026-03-02 10:00:05")] + [utc("2026-03-02 10:00:06.25")] * 2 + [
        utc("2026-03-02 10:00:05")
    ]
    assert frame["latency_ms"].isna().all() and set(frame["endpoint"]) == {"propensity-prod"}
    assert list(frame["holdout"]) == [False, False, True, False] and frame.iloc[0]["offer"] == "discount"
    assert frame.attrs[READ_ERRORS] == 1
    reasons = {q["where"]: q["reason"] for q in frame.attrs[READ_QUARANTINE]}
    assert set(reasons) == {"record 4", "record 6 (eventId e6)", "record 7 (eventId e7)", "record 8"}
    assert (
        "encoding" in reasons["record 6 (eventId e6)"]
        and "endpointOutput must be an object" in reasons["record 7 (eventId e7)"]
    )


def test_on_day_keeps_the_utc_day_and_the_read_counts():
    ts = utc("2026-03-02 23:59:59").timestamp()
    lines = [_log_line(_prediction("s1", 0.3), "r1", ts), _log_line(_prediction("s2", 0.3), "r2", ts + 2), "junk"]
    frame = decisions_from_inference_log(lines, "propensity")
    day = on_day(frame, "decided_at", "2026-03-02")
    assert list(day["request_id"]) == ["r1"] and len(day.attrs[READ_QUARANTINE]) == 1
    assert list(on_day(frame, "decided_at", "2026-03-03")["request_id"]) == ["r2"]


# -- outcomes and labels --------------------------------------------------------------------------------------------


def _session_events() -> pd.DataFrame:
    """Three hand-made sessions: `buy` purchases twice (2 x 10.0 at 10:20, then 5.0 with an unknown-price line at
    10:40), `browse` never buys, `late` is still going at 11:50."""
    rows = [  # (session, user, time, event type, price, quantity)
        ("buy", "u1", "10:00", "product_view", None, 1),
        ("buy", "u1", "10:10", "add_to_cart", 10.0, 2),
        ("buy", "u1", "10:20", "purchase", 10.0, 2),
        ("buy", "u1", "10:40", "purchase", 5.0, 1),
        ("buy", "u1", "10:40", "purchase", None, 1),
        ("browse", "u2", "10:05", "page_view", None, 1),
        ("browse", "u2", "10:25", "search", None, 1),
        ("late", "u3", "11:30", "page_view", None, 1),
        ("late", "u3", "11:50", "purchase", 1.0, 1),
    ]
    return contract_events(
        [
            {
                "event_id": f"e{i}",
                "session_id": session,
                "user_id": user,
                "event_time": f"2026-03-02 {time}",
                "event_type": event_type,
                "price": float("nan") if price is None else price,
                "quantity": quantity,
            }
            for i, (session, user, time, event_type, price, quantity) in enumerate(rows)
        ]
    )


def test_session_outcomes_from_session_events():
    outcomes = session_outcomes(_session_events()).set_index("session_id")
    assert list(outcomes.reset_index().columns) == list(OUTCOME_COLUMNS)
    buy, browse = outcomes.loc["buy"], outcomes.loc["browse"]
    assert (buy["session_start"], buy["session_end"]) == (utc("2026-03-02 10:00"), utc("2026-03-02 10:40"))
    assert buy["purchased"] and buy["first_purchase_time"] == utc("2026-03-02 10:20")
    assert buy["revenue"] == 25.0 and buy["time_to_purchase_s"] == 1200.0  # the unknown price counts 0
    assert not browse["purchased"] and pd.isna(browse["first_purchase_time"]) and browse["revenue"] == 0.0
    assert np.isnan(browse["time_to_purchase_s"]) and browse["user_id"] == "u2"
    assert str(outcomes["first_purchase_time"].dtype) == "datetime64[us, UTC]"
    assert session_outcomes(_session_events().iloc[0:0]).empty


def _decisions(rows: list[tuple]) -> pd.DataFrame:
    """(request_id, session_id, decided_at[, session events the online row had folded]) as decision-log lines,
    read by the reader under test; without a count the decision was a fallback (no session features)."""
    lines = []
    for request_id, session, at, *seen in rows:
        prediction = _prediction(session, 0.3)
        prediction["features"]["session_events"] = float(seen[0]) if seen else None
        lines.append(_log_line(prediction, request_id, utc(at).timestamp()))
    return decisions_from_inference_log(lines, "propensity")


def test_labels_mature_with_the_session_and_decisions_after_the_first_purchase_are_left_out():
    decisions = _decisions(
        [
            ("early", "buy", "2026-03-02 10:05", 1),  # scored on the view: before the purchase, label 1
            ("at", "buy", "2026-03-02 10:20", 2),  # on the cart add, the last state before the purchase: label 1
            ("after", "buy", "2026-03-02 10:30", 3),  # its state holds the purchase: left out
            ("never", "browse", "2026-03-02 10:15", 1),  # label 0
            ("open", "late", "2026-03-02 11:40", 1),  # session not closed yet at as_of
            ("orphan", "unknown", "2026-03-02 10:00", 1),  # no events in the lake: waits
            ("blind", "buy", "2026-03-02 10:10"),  # a fallback, no session state: judged by its time
            ("blind-late", "buy", "2026-03-02 10:45"),  # a fallback after the first purchase: left out
        ]
    )
    outcomes = session_outcomes(_session_events())
    assert outcomes.set_index("session_id")["events_before_purchase"].to_dict() == {"browse": 2, "buy": 2, "late": 1}
    labelled = label_decisions(decisions, outcomes, as_of=utc("2026-03-02 12:00"), maturity_s=1800)
    assert list(labelled.columns) == list(LABELLED_COLUMNS)
    got = labelled.set_index("request_id")
    assert list(got.index) == ["early", "at", "never", "blind"]
    assert list(got["label"]) == [1, 1, 0, 1] and got["label"].dtype == "int64"
    assert list(got["revenue"]) == [25.0, 25.0, 0.0, 25.0]
    assert got.loc["early", "session_start"] == utc("2026-03-02 10:00")  # the session's clock, not the decision's
    assert got.loc["early", "time_to_purchase_s"] == 900.0 and got.loc["at", "time_to_purchase_s"] == 0.0
    assert np.isnan(got.loc["never", "time_to_purchase_s"])
    assert got.loc["early", "matured_at"] == utc("2026-03-02 11:10") and got.loc["never", "matured_at"] == utc(
        "2026-03-02 10:55"
    )
    # a matured label is exactly at session end + maturity: not a second before
    assert "never" not in set(
        label_decisions(decisions, outcomes, as_of=utc("2026-03-02 10:54:59"), maturity_s=1800)["request_id"]
    )
    # later, the open session has closed and its decision (before its purchase) is labelled
    later = label_decisions(decisions, outcomes, as_of=utc("2026-03-02 12:20"), maturity_s=1800)
    assert later.set_index("request_id").loc["open", "label"] == 1
    # the endpoint's clock does not matter: the same decisions stamped a year later get the same labels
    shifted = decisions.assign(decided_at=decisions["decided_at"] + pd.Timedelta(days=365))
    relabelled = label_decisions(shifted, outcomes, as_of=utc("2026-03-02 12:00"), maturity_s=1800)
    assert list(relabelled.set_index("request_id")["label"].drop(["blind"], errors="ignore")) == [1, 1, 0]
    assert relabelled["time_to_purchase_s"].isna().all()  # from a decision stamped after the purchase: unknown


def test_labelling_nothing_gives_the_typed_empty_frame():
    empty = label_decisions(
        _decisions([]), session_outcomes(_session_events()), as_of=utc("2026-03-02 12:00"), maturity_s=60
    )
    assert empty.empty and list(empty.columns) == list(LABELLED_COLUMNS)
    with pytest.raises(ValueError, match="maturity_s"):
        label_decisions(_decisions([]), session_outcomes(_session_events()), as_of=utc("2026-03-02"), maturity_s=-1)
