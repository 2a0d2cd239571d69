"""Uplift on the simulator (issue 12, 6(a)): a profit policy learned from a logged decision log, valued off-policy
against the exact value the simulator knows, and an A/B of that policy against the randomised holdout.

1. A store's traffic is simulated; each session meets one decision point, its third chain step (sessions that
   end or buy before it meet none). The exact outcome without and with the offer at that point, and so the exact
   incremental profit, comes from backward induction (`propensity.sources.interventions`).
2. Logging: today's policy (`serving.decision.DecisionPolicy`, the scorer's own code) offers the discount to the
   top 30 % by propensity, holds out 10 % of sessions and explores 10 % of the others below the threshold; each
   session then runs on under the arm it got, with the simulator's own step. The propensity is the simulator's
   exact one (this measures uplift modelling, not the propensity model).
3. On the sessions of half the users, T-, X- and DR-learners (LightGBM, cross-fitted, inverse-propensity weights
   from the logged probabilities) learn the uplift in realised profit from the session features at the decision
   point and the propensity; the profit policy treats where it is positive.
4. On the other half: every policy (profit policies, treat-all, today's threshold, random at the DR policy's
   rate, the oracle that knows the exact effect, treat-none) valued exactly and by IPS, SNIPS and DR with
   bootstrap intervals; the promotion gate (DR difference against today's policy, lower bound above 0).
5. A/B on a fresh store (another seed): the DR profit policy against a 50 % holdout (an A/B needs the power).
   Relative conversion lift, AOV difference and incremental profit per 1,000 sessions, policy arm against holdout,
   each with a bootstrap interval; beside it the exact value of the same policy and of the oracle (the ceiling).

6. Hillstrom (a real randomised e-mail test; Womens E-Mail against No E-Mail), targets visit, conversion and spend,
   over 20 repeated stratified 30 % test splits: T-, X-, DR-learners and the class transformation (binary targets),
   normalised Qini (scikit-uplift's definition), uplift AUC and uplift@30 %, each as mean, SD and the 95 % interval
   of the mean over the splits, beside the random band (random scores on the same splits, 5 per split) and the
   ATE. One split tells nothing: the test split holds about 37 control and 57 treated conversions.

Run: `python -m bench.uplift [--quick]`; writes var/bench/uplift.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.model_selection import StratifiedShuffleSplit

from bench.common import parse_forwarded_args, publish, run_meta
from propensity.datasets import dataset_file
from propensity.features.definitions import PROPENSITY_INPUT
from propensity.sources.interventions import OfferResponse, offer_effects, offer_sensitivity
from propensity.uplift.ab import ab_figures
from propensity.uplift.learners import fit_uplift
from propensity.uplift.metrics import qini_auc_score, uplift_at_k, uplift_auc_score
from propensity.uplift.policy import OfferTerms, treat_when_profitable
from propensity.uplift.policy_value import doubly_robust, dr_difference, ips, policy_promotion, snips
from propensity.uplift.simulated import DecisionPoints, decision_points, run_on
from propensity.uplift.training import scoring_rows
from serving.decision import DecisionPolicy

NAME = "uplift"
THRESHOLD_SHARE = 0.3  # today's policy offers the discount to the top 30 % by propensity
LOGGING = {"top_share": THRESHOLD_SHARE, "holdout_share": 0.1, "exploration_share": 0.1}
AB_HOLDOUT = 0.5  # an A/B: half the sessions keep no offer, so the difference has power
LEARNERS = ("t", "x", "dr")
LEARNER = "dr"  # the platform's (propensity.uplift.training): the headline figures and targets are its
TARGETS = {"uplift_at_30_min": 0.066, "spearman_min": 0.8, "regret_share_max": 0.10}
RESAMPLES = 400
TERMS = OfferTerms()
PER = 1000  # figures per 1,000 sessions


def logging_policy(world: DecisionPoints) -> pd.DataFrame:
    p = world.effects["p_control"].to_numpy()
    policy = DecisionPolicy(
        {
            "threshold": float(np.quantile(p, 1 - LOGGING["top_share"])),
            "holdout_share": LOGGING["holdout_share"],
            "exploration_share": LOGGING["exploration_share"],
            "offer": "discount",
        }
    )
    decisions = [policy.decide(s, float(score)) for s, score in zip(world.states.session_id, p)]
    return pd.DataFrame(
        {
            "treated": np.array([d.treated for d in decisions]),
            "holdout": np.array([d.holdout for d in decisions]),
            "treatment_probability": np.array([d.treatment_probability for d in decisions]),
            "targeted": (p >= policy.threshold).astype(float),
        }
    )


def exact_value(effects: pd.DataFrame, treat: np.ndarray) -> float:
    """Expected profit per 1,000 sessions when `treat` decides: the untreated profit plus the treated increments."""
    base = TERMS.margin_rate * effects["revenue_control"].to_numpy()
    return float(PER * np.mean(base + np.asarray(treat) * effects["incremental_profit"].to_numpy()))


def off_policy(log: pd.DataFrame, outcome: pd.DataFrame, target: np.ndarray, mu1, mu0, groups) -> dict:
    args = (outcome["treated"], log["treatment_probability"], outcome["profit"], target)
    values = [
        ips(*args, groups=groups, resamples=RESAMPLES),
        snips(*args, groups=groups, resamples=RESAMPLES),
        doubly_robust(*args, mu1, mu0, groups=groups, resamples=RESAMPLES),
    ]
    return {v.estimator: {"value": PER * v.value, "ci": [PER * v.low, PER * v.high]} for v in values}


def ab_test(world: DecisionPoints, model, seed: int) -> dict:
    """The DR profit policy against a randomised holdout on a fresh store."""
    tau = model.predict(world.X)
    targeted = treat_when_profitable(tau) > 0
    holdout = np.random.default_rng(seed).random(len(tau)) < AB_HOLDOUT
    outcome = run_on(world, targeted & ~holdout, seed + 1)
    effects = world.effects
    return {
        "sessions": len(tau),
        "treated_share_of_policy_arm": float(targeted[~holdout].mean()),
        **ab_figures(outcome["purchased"], outcome["revenue"], outcome["profit"], holdout, resamples=RESAMPLES),
        "exact_incremental_profit_per_1000": {
            "policy": exact_value(effects, targeted) - exact_value(effects, np.zeros(len(tau))),
            "oracle": exact_value(effects, treat_when_profitable(effects["incremental_profit"]))
            - exact_value(effects, np.zeros(len(tau))),
            "treat_all": exact_value(effects, np.ones(len(tau))) - exact_value(effects, np.zeros(len(tau))),
        },
    }


HILLSTROM_SPLITS = 20
HILLSTROM_TARGETS = ("visit", "conversion", "spend")
RANDOM_PER_SPLIT = 5
LEARNER_NAMES = (*LEARNERS, "class_transformation", "random")


def hillstrom_frame() -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    data = pd.read_csv(dataset_file("hillstrom"))
    data = data[data["segment"].isin(["Womens E-Mail", "No E-Mail"])].reset_index(drop=True)
    X = data[["recency", "history", "mens", "womens", "newbie"]].astype(float)
    for column in ("zip_code", "channel"):
        X = X.join(pd.get_dummies(data[column], prefix=column, dtype=float))
    return X, data[list(HILLSTROM_TARGETS)].astype(float), (data["segment"] == "Womens E-Mail").to_numpy(float)


def _summary(values) -> dict:
    v = np.asarray(values, float)
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return {
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
        "ci_of_mean": [float(v.mean() - half), float(v.mean() + half)],
    }


def _scores(y, tau, t) -> dict:
    return {
        "qini": qini_auc_score(y, tau, t),
        "uplift_auc": uplift_auc_score(y, tau, t),
        "uplift_at_30": uplift_at_k(y, tau, t, k=0.3),
    }


def hillstrom_section(quick: bool) -> dict:
    X, outcomes, t = hillstrom_frame()
    splits = 3 if quick else HILLSTROM_SPLITS
    rng = np.random.default_rng(0)
    out = {"rows": len(X), "treated": int(t.sum()), "splits": splits, "test_share": 0.3, "targets": {}}
    for target in HILLSTROM_TARGETS:
        y = outcomes[target].to_numpy()
        learners = [*LEARNERS, "class_transformation"] if target != "spend" else list(LEARNERS)
        strata = t * 2 + (y > 0)  # arm x responded
        splitter = StratifiedShuffleSplit(n_splits=splits, test_size=0.3, random_state=12)
        figures: dict[str, list[dict]] = {name: [] for name in [*learners, "random"]}
        for train, test in splitter.split(X, strata):
            for name in learners:
                model = fit_uplift(name, X.iloc[train], y[train], t[train], 0.5, folds=3, seed=0)
                figures[name].append(_scores(y[test], model.predict(X.iloc[test]), t[test]))
            for _ in range(RANDOM_PER_SPLIT):
                figures["random"].append(_scores(y[test], rng.random(len(test)), t[test]))
        treated_mean, control_mean = y[t == 1].mean(), y[t == 0].mean()
        summary = {"ate": float(treated_mean - control_mean), "control_mean": float(control_mean)}
        for name, rows in figures.items():
            summary[name] = {metric: _summary([r[metric] for r in rows]) for metric in rows[0]}
        band = {
            m: [float(q) for q in np.quantile([r[m] for r in figures["random"]], [0.025, 0.975])]
            for m in figures["random"][0]
        }
        summary["random_band_95"] = band
        for name in learners:  # how many splits beat the random band's upper edge
            summary[name]["splits_above_random_band"] = {
                m: int(sum(r[m] > band[m][1] for r in figures[name])) for m in band
            }
        out["targets"][target] = summary
    out["policy_profit_ips_per_1000"] = hillstrom_policies(X, outcomes, t, splits)
    return out


def hillstrom_policies(X: pd.DataFrame, outcomes: pd.DataFrame, t: np.ndarray, splits: int) -> dict:
    """IPS-estimated profit per 1,000 customers on each test split (spend as revenue, TERMS' economics; the arm
    share is the experiment's): the DR profit policy learned on the training split, treat-all, and a propensity
    threshold (LightGBM on conversion, both arms; e-mail the top THRESHOLD_SHARE by score, as the logging policy
    above does)."""
    spend, converted = outcomes["spend"].to_numpy(float), outcomes["conversion"].to_numpy(float)
    profit = TERMS.realised_profit(spend, t)
    share = float(t.mean())
    strata = t * 2 + (converted > 0)
    splitter = StratifiedShuffleSplit(n_splits=splits, test_size=0.3, random_state=12)
    values: dict[str, list[float]] = {"profit_dr": [], "treat_all": [], "propensity_threshold": [], "treat_none": []}
    for train, test in splitter.split(X, strata):
        model = fit_uplift("dr", X.iloc[train], profit[train], t[train], share, folds=3, seed=0)
        scorer = lgb.train(
            {"objective": "binary", "verbose": -1, "num_threads": 2, "deterministic": True, "seed": 0},
            lgb.Dataset(X.iloc[train], label=converted[train]),
            num_boost_round=100,
        )
        score = scorer.predict(X.iloc[test])
        targets = {
            "profit_dr": treat_when_profitable(model.predict(X.iloc[test])),
            "treat_all": np.ones(len(test)),
            "propensity_threshold": (score >= np.quantile(score, 1 - THRESHOLD_SHARE)).astype(float),
            "treat_none": np.zeros(len(test)),
        }
        for name, target in targets.items():
            logged = np.full(len(test), share)
            values[name].append(PER * ips(t[test], logged, profit[test], target, resamples=2).value)
    out = {name: _summary(v) for name, v in values.items()}
    for name in ("treat_all", "propensity_threshold"):
        out[f"profit_dr_minus_{name}"] = _summary(np.subtract(values["profit_dr"], values[name]))
    return out


def run(args: argparse.Namespace) -> dict:
    meta = run_meta(NAME, args.quick)
    started = time.perf_counter()
    users, days = (3000, 7) if args.quick else (18000, 14)
    world = decision_points(seed=args.seed, users=users, days=days, terms=TERMS)
    log = logging_policy(world)
    outcome = run_on(world, log["treated"].to_numpy(), args.seed + 100)
    effects, X = world.effects, world.X
    test = (world.users % 2) == 1  # whole users on each side
    train = ~test
    t_, e_, y_ = outcome["treated"].to_numpy(), log["treatment_probability"].to_numpy(), outcome["profit"].to_numpy()
    groups = world.users[train]
    models = {
        name: fit_uplift(name, X[train], y_[train], t_[train], e_[train], folds=3, groups=groups, seed=0)
        for name in LEARNERS
    }
    Xt, et = X[test].reset_index(drop=True), effects[test].reset_index(drop=True)
    mu1, mu0 = models["t"].predict_outcomes(Xt)
    test_log, test_outcome = log[test].reset_index(drop=True), outcome[test].reset_index(drop=True)
    test_groups = world.users[test]
    rng = np.random.default_rng(args.seed)
    predicted = {name: model.predict(Xt) for name, model in models.items()}
    dr_share = float(treat_when_profitable(predicted["dr"]).mean())
    policies = {
        **{f"profit_{name}": treat_when_profitable(tau) for name, tau in predicted.items()},
        "treat_all": np.ones(len(Xt)),
        "current_threshold": test_log["targeted"].to_numpy(),
        "random_at_dr_rate": (rng.random(len(Xt)) < dr_share).astype(float),
        "oracle": treat_when_profitable(et["incremental_profit"]),
        "treat_none": np.zeros(len(Xt)),
    }
    valued = {}
    for name, target in policies.items():
        entry = {"treated_share": float(target.mean()), "exact_per_1000": exact_value(et, target)}
        try:
            entry["off_policy"] = off_policy(test_log, test_outcome, target, mu1, mu0, test_groups)
        except ValueError as unsupported:  # a policy acting where the log never explored
            entry["off_policy"] = {"refused": str(unsupported)}
        valued[name] = entry
    difference = dr_difference(
        test_outcome["treated"],
        test_log["treatment_probability"],
        test_outcome["profit"],
        policies["profit_dr"],
        policies["current_threshold"],
        mu1,
        mu0,
        groups=test_groups,
        resamples=RESAMPLES,
    )
    verdict = policy_promotion(difference)
    # The deployed policy's incremental profit over offering nothing (what the A/B's holdout measures), by DR.
    over_none = dr_difference(
        test_outcome["treated"],
        test_log["treatment_probability"],
        test_outcome["profit"],
        policies["profit_dr"],
        policies["treat_none"],
        mu1,
        mu0,
        groups=test_groups,
        resamples=RESAMPLES,
    )
    ranking = {name: float(spearmanr(tau, et["incremental_profit"]).statistic) for name, tau in predicted.items()}
    # What a learner could reach at best without the per-user trait (a random effect nothing in the log reveals):
    # the exact effect with every other hidden trait known, ranked and acted on.
    known = OfferResponse(user_sd=0.0)
    beta_known = offer_sensitivity(world.states.traits, world.cat, known)[test]
    without_trait = offer_effects(world.states.take(np.flatnonzero(test)), beta_known, world.cat, TERMS)
    ceiling_policy = treat_when_profitable(without_trait["incremental_profit"])
    valued["oracle_without_user_trait"] = {
        "treated_share": float(ceiling_policy.mean()),
        "exact_per_1000": exact_value(et, ceiling_policy),
        "off_policy": {},
    }
    ceiling = {
        "spearman": float(spearmanr(without_trait["incremental_profit"], et["incremental_profit"]).statistic),
        "regret_share": regret_share(valued, "oracle_without_user_trait"),
    }
    decision_cost = decision_cost_us(models[LEARNER], Xt)
    fresh = decision_points(seed=args.seed + 1, users=users, days=days, terms=TERMS)
    ab = ab_test(fresh, models["dr"], seed=args.seed + 7)
    hillstrom = hillstrom_section(args.quick)
    meta.update(
        wall_s=round(time.perf_counter() - started, 1), load_average_at_end=[round(v, 2) for v in os.getloadavg()]
    )
    simulator = {
        "spearman_tau": ranking[LEARNER],
        "policy_regret_share": regret_share(valued, f"profit_{LEARNER}"),
        "dr_estimate": PER * over_none.value,
        "dr_estimate_ci": [PER * over_none.low, PER * over_none.high],
        "ab_value_ci": ab["incremental_profit_per_1000"]["ci"],
        "profit_minus_threshold_ci": [PER * difference.low, PER * difference.high],
        "ceiling_without_user_trait": ceiling,
        "ab": {
            "conversion_lift_rel": ab["relative_conversion_lift"]["value"],
            "aov_diff": ab["aov_difference"]["value"],
            "profit_per_1000": ab["incremental_profit_per_1000"]["value"],
        },
    }
    headline = {target: hillstrom_headline(hillstrom["targets"][target]) for target in HILLSTROM_TARGETS}
    meta["budgets"] = budgets(headline["visit"], simulator)
    return {
        "meta": meta,
        "simulator": simulator,
        "store": {
            "users": users,
            "days": days,
            "decision_points": len(X),
            "train": int(train.sum()),
            "test": int(test.sum()),
            "treated_share_logged": float(log["treated"].mean()),
            "share_with_negative_tau_conversion": float((effects["tau_conversion"] < 0).mean()),
            "share_with_positive_incremental_profit": float((effects["incremental_profit"] > 0).mean()),
            "terms": TERMS.__dict__,
        },
        "rank_correlation_with_exact_incremental_profit": ranking,
        "policies": valued,
        "promotion": {
            "promote": verdict.promote,
            "reason": verdict.reason,
            "dr_difference_per_1000": [PER * difference.value, PER * difference.low, PER * difference.high],
        },
        "ab_test": ab,
        "decision_cost_us": decision_cost,
        "hillstrom": {**headline, **hillstrom},
    }


def decision_cost_us(model, X: pd.DataFrame, rows: int = 5000) -> dict:
    """Microseconds per `DecisionPolicy.decide` on the request path, the uplift rule (this model, compiled) beside
    the threshold rule (the baseline, in the same run), on rows laid out as the scorer passes them."""
    X = X.iloc[:rows]
    inputs = list(zip([f"s{i}" for i in range(len(X))], X[PROPENSITY_INPUT], scoring_rows(X)))
    shares = {"holdout_share": LOGGING["holdout_share"], "exploration_share": 0.05, "offer": "discount"}
    policies = {
        "threshold": DecisionPolicy({"threshold": 0.1, **shares}),
        "uplift": DecisionPolicy({"uplift": {"model": model.to_dict()}, **shares}),
    }
    out = {}
    for name, policy in policies.items():
        started = time.perf_counter()
        for session_id, propensity, row in inputs:
            policy.decide(session_id, float(propensity), row)
        out[name] = 1e6 * (time.perf_counter() - started) / len(inputs)
    out["ratio"] = out["uplift"] / out["threshold"]
    return out


def regret_share(valued: dict, policy: str) -> float:
    """(oracle - policy) / (oracle - treat_none), on exact values: the share of the oracle's incremental profit
    the policy leaves on the table."""
    exact = {name: entry["exact_per_1000"] for name, entry in valued.items()}
    ceiling = exact["oracle"] - exact["treat_none"]
    return float((exact["oracle"] - exact[policy]) / ceiling) if ceiling > 0 else float("nan")


def hillstrom_headline(summary: dict) -> dict:
    """The issue's figures for one Hillstrom target, for the platform's learner (LEARNER)."""
    learner = summary[LEARNER]
    return {
        "learner": LEARNER,
        "qini_mean": learner["qini"]["mean"],
        "qini_ci": learner["qini"]["ci_of_mean"],
        "random_band": summary["random_band_95"]["qini"],
        "uplift_at_30_mean": learner["uplift_at_30"]["mean"],
    }


def budgets(visit: dict, simulator: dict) -> dict:
    lo, hi = simulator["ab_value_ci"]
    return {
        "hillstrom_visit_qini_interval_above_random_band": {
            "pass": visit["qini_ci"][0] > visit["random_band"][1],
            "qini_ci": visit["qini_ci"],
            "random_band_high": visit["random_band"][1],
        },
        "hillstrom_visit_uplift_at_30_at_least_0.066": {
            "pass": visit["uplift_at_30_mean"] >= TARGETS["uplift_at_30_min"],
            "mean": visit["uplift_at_30_mean"],
        },
        "simulator_spearman_at_least_0.8": {
            "pass": simulator["spearman_tau"] >= TARGETS["spearman_min"],
            "spearman": simulator["spearman_tau"],
        },
        "simulator_regret_at_most_10pct_of_oracle": {
            "pass": simulator["policy_regret_share"] <= TARGETS["regret_share_max"],
            "regret_share": simulator["policy_regret_share"],
        },
        "simulator_dr_estimate_inside_ab_interval": {
            "pass": lo <= simulator["dr_estimate"] <= hi,
            "dr_estimate": simulator["dr_estimate"],
            "ab_value_ci": [lo, hi],
        },
        "simulator_profit_policy_beats_threshold": {
            "pass": simulator["profit_minus_threshold_ci"][0] > 0,
            "ci": simulator["profit_minus_threshold_ci"],
        },
    }


def print_summary(result: dict) -> None:
    store_, ab = result["store"], result["ab_test"]
    print(f"{store_['decision_points']} decision points; exact profit per 1,000 sessions by policy:")
    for name, entry in result["policies"].items():
        dr = entry["off_policy"].get("dr", {})
        print(f"  {name:20s} treats {entry['treated_share']:.2f}  exact {entry['exact_per_1000']:9.1f}  DR {dr}")
    print(f"promotion: {result['promotion']['reason']}")
    print(
        f"A/B: conversion lift {ab['relative_conversion_lift']}, AOV difference {ab['aov_difference']}, "
        f"profit per 1,000 {ab['incremental_profit_per_1000']}; exact {ab['exact_incremental_profit_per_1000']}"
    )
    for target, summary in result["hillstrom"]["targets"].items():
        band = summary["random_band_95"]["qini"]
        qini = {k: round(v["qini"]["mean"], 4) for k, v in summary.items() if k in LEARNER_NAMES}
        print(f"Hillstrom {target}: ATE {summary['ate']:.4f}; normalised Qini mean {qini}; random band {band}")
    policies = result["hillstrom"]["policy_profit_ips_per_1000"]
    print(f"Hillstrom IPS profit per 1,000 customers: { {k: round(v['mean'], 1) for k, v in policies.items()} }")
    for name, verdict in result["meta"]["budgets"].items():
        print(f"target {name}: {'yes' if verdict['pass'] else 'NO'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small store: checks the plumbing")
    parser.add_argument("--seed", type=int, default=31)
    args = parse_forwarded_args(parser, NAME, argv)
    return publish(NAME, run(args), print_summary)


if __name__ == "__main__":
    sys.exit(main())
