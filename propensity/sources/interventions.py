"""Offers in the simulated storefront: how an offer shown at a decision point changes the rest of the session, the
exact effect on the purchase probability and on expected revenue, and the continuation under either arm.

Response. An offer shown to a session moves its funnel from the next step on by a session-level sensitivity beta:
cart adds are multiplied by exp(ADD_SHARE * beta) (basket value), checkout starts by exp(beta), and a started
checkout completes with log-odds moved by BUY_SHARE * beta. beta is larger for hesitant shoppers (low intent), at
night (when checkouts are put off) and in expensive categories (the discount is worth more there), plus a
persistent per-user trait; it is negative for shoppers with high intent, who buy anyway and resent the nudge, and
for some users whatever their intent. Browsing takes up whatever probability the changed actions give or leave.

Exact effect. `expected_outcomes` solves, by backward induction over the steps left before the session cap (as
the simulator's `true_propensity` does), P(purchase) and E[revenue] from a decision point under any action table.
Revenue is the value of the lines in the cart at purchase: each line already in the cart counts with the
probability that the session buys without removing it (the cart is a stack: a removal takes the last line added),
and each future cart add counts its expected value times the probability that it survives to the purchase. A future
add's value is the expected price of a product drawn in the session's focus mix (times the mean quantity 1.08),
or, until the next product view, 70 % of the time the product viewed last before the decision, as the simulator
draws it. `continue_sessions` runs the simulator's own step from the same state, and a test holds the two equal.

Economics. With a gross margin rate m on revenue, a discount rate d given away on every order placed under the
offer (including those that would have happened anyway) and a contact cost c, the expected incremental profit of
showing the offer is m * (R1 - R0) - d * R1 - c (R1, R0: expected revenue treated and not treated).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

# The simulator's chain, shared on purpose: the effect is exact only for the same transitions and draws.
from propensity.sources.simulator import (
    _KIND_OF_STATE,
    ADD,
    CHECKOUT,
    EXIT,
    KIND_B,
    KIND_K,
    MAX_CART_LINES,
    MAX_STEPS,
    N_STATES,
    PROD,
    PURCHASE,
    REMOVE,
    STATE_K,
    SessionWorld,
    _action_table,
    _bellman_step,
    _catalogue,
    _logit,
    _sigmoid,
    _transition_parts,
    cumulative,
)
from propensity.uplift.policy import OfferTerms

ADD_SHARE = 0.5  # of beta, on cart adds
BUY_SHARE = 0.3  # of beta, on the log-odds of completing a started checkout
MEAN_QUANTITY = 1.08  # a cart add is 2 units 8 % of the time
LAST_VIEWED_REUSE = 0.7  # a cart add takes the product viewed last, when there is one
MAX_ACTIVE_MASS = 0.98  # exit + add + remove + checkout never crowd browsing out entirely


@dataclass(frozen=True)
class OfferResponse:
    """Session-level sensitivity to an offer: beta = base + intent_slope * intent + night (00-05 UTC)
    + price_slope * log(focus price level / 30) + a per-user trait ~ N(0, user_sd)."""

    base: float = 0.6
    intent_slope: float = -2.5
    night: float = 0.4
    price_slope: float = 0.5
    user_sd: float = 0.35
    seed: int = 0  # of the per-user traits


def catalogue(seed: int) -> dict[str, np.ndarray]:
    """The simulated run's catalogue: the first draws of `simulate_traffic(seed=seed)`."""
    return _catalogue(np.random.default_rng(seed))


def drawn_line_value(cat: dict[str, np.ndarray], focus: np.ndarray) -> np.ndarray:
    """Expected value of a cart line drawn afresh in a session with this focus category: the simulator draws 60 %
    from the focus category and 40 % from the whole catalogue, both by popularity."""
    price = cat["price"]
    popularity = np.diff(np.concatenate([[0.0], cat["global_cdf"]]))
    overall = float((popularity * price).sum())
    by_category = np.bincount(cat["category"], popularity * price, len(cat["cat_lo"])) / np.maximum(
        np.bincount(cat["category"], popularity, len(cat["cat_lo"])), 1e-300
    )
    return MEAN_QUANTITY * (0.6 * by_category[np.asarray(focus)] + 0.4 * overall)


def offer_sensitivity(sessions: pd.DataFrame, cat: dict[str, np.ndarray], response: OfferResponse) -> np.ndarray:
    """beta per row of `sessions` (the simulator's hidden session traits)."""
    users = sessions["user_index"].to_numpy()
    trait = np.random.default_rng(response.seed).normal(0.0, response.user_sd, int(users.max()) + 1)[users]
    price_level = drawn_line_value(cat, sessions["focus_category"].to_numpy()) / MEAN_QUANTITY
    return (
        response.base
        + response.intent_slope * sessions["intent"].to_numpy()
        + response.night * (sessions["hour"].to_numpy() < 6)
        + response.price_slope * np.log(price_level / 30.0)
        + trait
    )


def treated_table(intent, checkout_factor, beta) -> np.ndarray:
    """The action table of sessions shown the offer (module docstring)."""
    table = _action_table(np.asarray(intent, float), checkout_factor)
    beta = np.asarray(beta, float)[:, None]
    carts = table[:, KIND_B:KIND_K]  # a view: kinds B, C1, C2, C3
    carts[:, :, ADD] *= np.exp(ADD_SHARE * beta)
    carts[:, :, CHECKOUT] *= np.exp(beta)
    active = carts[:, :, [EXIT, ADD, REMOVE, CHECKOUT]].sum(axis=2)
    movable = carts[:, :, ADD] + carts[:, :, CHECKOUT]
    scale = np.where(active > MAX_ACTIVE_MASS, 1 - (active - MAX_ACTIVE_MASS) / movable, 1.0)
    carts[:, :, ADD] *= scale
    carts[:, :, CHECKOUT] *= scale
    browse = 1.0 - carts[:, :, [EXIT, ADD, REMOVE, CHECKOUT]].sum(axis=2)
    old_browse = carts[:, :, :4].sum(axis=2)
    carts[:, :, :4] *= (browse / old_browse)[:, :, None]
    buy = _sigmoid(_logit(table[:, KIND_K, PURCHASE]) + BUY_SHARE * beta[:, 0])
    table[:, KIND_K, PURCHASE] = buy
    table[:, KIND_K, EXIT] = 1.0 - buy
    return table


@dataclass(frozen=True)
class DecisionStates:
    """The simulator's state right after each decision event: the chain step it was (0 = the session's first
    page view), the cart as a stack of (product, quantity) lines, checkout, the last product viewed, and the
    session's hidden traits."""

    event_id: np.ndarray
    session_id: np.ndarray
    step: np.ndarray
    lines: np.ndarray
    in_checkout: np.ndarray
    cart_product: np.ndarray  # (n, MAX_CART_LINES), product index; rows beyond `lines` unused
    cart_qty: np.ndarray
    last_viewed: np.ndarray  # product index, -1 = none
    intent: np.ndarray
    checkout_factor: np.ndarray
    focus: np.ndarray
    traits: pd.DataFrame  # the sessions rows, aligned

    def __len__(self) -> int:
        return len(self.step)

    @property
    def steps_left(self) -> np.ndarray:
        return MAX_STEPS - 1 - self.step

    @property
    def chain_state(self) -> np.ndarray:
        return np.where(self.in_checkout, STATE_K, self.lines)

    def take(self, index) -> DecisionStates:
        index = np.asarray(index)
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        out = {k: v[index] for k, v in values.items() if k != "traits"}
        return DecisionStates(**out, traits=self.traits.iloc[index].reset_index(drop=True))


def decision_states(events: pd.DataFrame, sessions: pd.DataFrame, decision_event_ids) -> DecisionStates:
    """Rebuild the state after each decision event from the session's events so far (as the storefront saw them)
    and the simulator's session traits. A decision event must not be a purchase: the session is over there."""
    wanted = pd.Index(decision_event_ids)
    if not wanted.is_unique:
        raise ValueError("decision event ids repeat")
    decided = events[events["event_id"].isin(wanted)]
    if len(decided) != len(wanted):
        raise ValueError(f"{len(wanted) - len(decided)} decision event ids are not in the events")
    if (decided["event_type"] == "purchase").any():
        raise ValueError("a purchase ends its session: there is nothing left to decide after it")
    rows = events[events["session_id"].isin(decided["session_id"])].sort_values(["session_id", "event_id"])
    product = rows["product_id"].map(lambda p: -1 if p is None else int(p[1:]), na_action="ignore")
    product = product.fillna(-1).astype(np.int64).to_numpy()
    snapshot: dict[str, tuple] = {}
    want = set(wanted)
    session = None
    for event_id, sid, kind, prod, qty in zip(
        rows["event_id"], rows["session_id"], rows["event_type"], product, rows["quantity"].to_numpy()
    ):
        if sid != session:
            session, step, stack, checkout, last_viewed = sid, -1, [], False, -1
        if kind == "purchase":
            continue
        step += 1
        if kind == "add_to_cart":
            stack.append((prod, qty))
        elif kind == "remove_from_cart":
            stack.pop()
        elif kind == "checkout_start":
            checkout = True
        elif kind == "product_view":
            last_viewed = prod
        if event_id in want:
            snapshot[event_id] = (sid, step, list(stack), checkout, last_viewed)
    n = len(wanted)
    cart_product = np.zeros((n, MAX_CART_LINES), dtype=np.int64)
    cart_qty = np.zeros((n, MAX_CART_LINES), dtype=np.int64)
    session_ids = np.empty(n, dtype=object)
    step, lines = np.zeros(n, np.int64), np.zeros(n, np.int64)
    checkout, last_viewed = np.zeros(n, bool), np.full(n, -1, np.int64)
    for i, event_id in enumerate(wanted):
        sid, step[i], stack, checkout[i], last_viewed[i] = snapshot[event_id]
        session_ids[i], lines[i] = sid, len(stack)
        for j, (prod, qty) in enumerate(stack):
            cart_product[i, j], cart_qty[i, j] = prod, qty
    traits = sessions.set_index("session_id").loc[session_ids].reset_index()
    return DecisionStates(
        event_id=np.asarray(wanted, dtype=object),
        session_id=session_ids,
        step=step,
        lines=lines,
        in_checkout=checkout,
        cart_product=cart_product,
        cart_qty=cart_qty,
        last_viewed=last_viewed,
        intent=traits["intent"].to_numpy(),
        checkout_factor=traits["checkout_factor"].to_numpy(),
        focus=traits["focus_category"].to_numpy(),
        traits=traits,
    )


def expected_outcomes(states: DecisionStates, table: np.ndarray, cat: dict[str, np.ndarray]) -> pd.DataFrame:
    """Exact P(purchase) and E[revenue] from each decision state when the rest of the session follows `table`
    (one row per state): backward induction over the steps left (module docstring)."""
    n = len(states)
    parts = _transition_parts(table)
    view = np.ascontiguousarray(table[:, :, PROD].T)
    other = parts["stay"] - view
    fresh = drawn_line_value(cat, states.focus)
    known = states.last_viewed >= 0
    reused = np.where(known, cat["price"][np.maximum(states.last_viewed, 0)] * MEAN_QUANTITY, fresh)
    line_value = {0: fresh, 1: LAST_VIEWED_REUSE * reused + (1 - LAST_VIEWED_REUSE) * fresh}
    held = cat["price"][states.cart_product] * states.cart_qty * (np.arange(MAX_CART_LINES) < states.lines[:, None])

    counts = np.arange(N_STATES) <= MAX_CART_LINES
    # keep[j]: the states where line j (0-based) can still be in the cart: counts above j, and checkout.
    keep = np.array([(np.arange(N_STATES) > j) | ~counts for j in range(MAX_CART_LINES)])[:, :, None]
    h = np.zeros((N_STATES, n))
    survive = np.zeros((MAX_CART_LINES, N_STATES, n))  # P(buy with line j still in the cart)
    added = {0: np.zeros((N_STATES, n)), 1: np.zeros((N_STATES, n))}  # value of future adds bought
    p_buy, revenue = np.zeros(n), np.zeros(n)
    state, left, at = states.chain_state, states.steps_left, np.arange(n)
    for r in range(1, int(left.max(initial=0)) + 1):
        new_added = {}
        for flag in (0, 1):
            w, w0, out = added[flag], added[0], np.zeros((N_STATES, n))
            for s in range(MAX_CART_LINES + 1):
                k = _KIND_OF_STATE[s]
                value = other[k] * w[s] + view[k] * w0[s]
                if s == MAX_CART_LINES:  # a full cart turns an add into a product view
                    value += parts["add"][k] * w0[s]
                else:
                    value += parts["add"][k] * (line_value[flag] * survive[s, s + 1] + w[s + 1])
                if s > 0:
                    value += parts["remove"][k] * w[s - 1] + parts["checkout"][k] * w[STATE_K]
                out[s] = value
            new_added[flag] = out  # checkout: no more adds, the row stays 0
        survive = np.stack([_bellman_step(survive[j], parts) for j in range(MAX_CART_LINES)]) * keep
        h = _bellman_step(h, parts)
        added = new_added
        due = left == r
        p_buy[due] = h[state[due], at[due]]
        flag = known[due].astype(int)
        revenue[due] = np.where(flag == 1, added[1][state[due], at[due]], added[0][state[due], at[due]]) + (
            held[due] * survive[:, state[due], at[due]].T
        ).sum(axis=1)
    return pd.DataFrame({"purchase_probability": p_buy, "expected_revenue": revenue})


def offer_effects(
    states: DecisionStates, beta: np.ndarray, cat: dict[str, np.ndarray], terms: OfferTerms = OfferTerms()
) -> pd.DataFrame:
    """Per decision point: the exact outcomes without and with the offer, tau on conversion and on revenue (gross,
    before the discount), and the expected incremental profit of showing it."""
    control = expected_outcomes(states, _action_table(states.intent, states.checkout_factor), cat)
    treated = expected_outcomes(states, treated_table(states.intent, states.checkout_factor, beta), cat)
    return pd.DataFrame(
        {
            "event_id": states.event_id,
            "session_id": states.session_id,
            "beta": beta,
            "p_control": control["purchase_probability"],
            "p_treated": treated["purchase_probability"],
            "tau_conversion": treated["purchase_probability"] - control["purchase_probability"],
            "revenue_control": control["expected_revenue"],
            "revenue_treated": treated["expected_revenue"],
            "tau_revenue": treated["expected_revenue"] - control["expected_revenue"],
            "incremental_profit": terms.incremental_profit(treated["expected_revenue"], control["expected_revenue"]),
        }
    )


def continue_sessions(
    states: DecisionStates, table: np.ndarray, cat: dict[str, np.ndarray], rng: np.random.Generator
) -> pd.DataFrame:
    """Run each session on from its decision state with the simulator's own step under `table`, up to the cap:
    whether it bought and the revenue (value of the cart lines at purchase), one row per state."""
    n = len(states)
    world = SessionWorld(
        cdf=cumulative(table),
        focus=np.asarray(states.focus),
        lines=states.lines.copy(),
        in_checkout=states.in_checkout.copy(),
        clock=np.zeros(n, dtype=np.int64),
        last_viewed=states.last_viewed.copy(),
        cart_product=states.cart_product.copy(),
        cart_qty=states.cart_qty.copy(),
    )
    left = states.steps_left.copy()
    bought, revenue = np.zeros(n, bool), np.zeros(n)
    live = np.arange(n)[left > 0]
    while len(live):
        (session, action, product, qty, _, _), after = world.step(rng, cat, live)
        buy = action == PURCHASE
        bought[session[buy]] = True
        np.add.at(revenue, session[buy], cat["price"][product[buy]] * qty[buy])
        left[live] -= 1
        live = after[left[after] > 0]
    return pd.DataFrame({"purchased": bought, "revenue": revenue})
