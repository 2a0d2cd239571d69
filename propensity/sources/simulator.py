"""Storefront traffic simulator: contract-v1 events plus the exact purchase probability behind every event.

Real logs never tell us a visitor's true chance to buy; the simulator does, so the model and its calibration can
be judged against ground truth rather than only against noisy labels.

Generative story
- Users carry a persistent purchase intent q_u ~ Beta(1.2, 8) (mostly low, a few high) and an activity level, so
  a user's history predicts future purchases. Sessions per user-day ~ Poisson(rate x weekday x activity).
- A session's effective intent p = sigmoid(logit(q_u) + N(0, 0.5) + hour/weekday effect), fixed for the session.
- Inside a session an absorbing Markov chain runs over B (cart empty), C1, C2, C3+ (cart lines), K (checkout)
  and absorbing P (purchase) / X (exit). Every non-exit step emits one event; a purchase emits one row per
  cart line. Transition probabilities are functions of p and of the session's hour (`_action_table`):
  late-night (00-05 UTC) shoppers fill carts but put checkout off (checkout starts x0.35), evening (18-22)
  shoppers start checkout more (x1.25). The effect acts only on carts, so the funnel is not additive in the
  log-odds, as real funnels are not; with transitions linear in p alone the logistic baseline was near-Bayes-
  optimal on simulated data while gradient boosting wins clearly on real sessions (UCI, README).

Ground truth
`true_propensity` is P(reach P | state right after the event, p, steps left before the cap), solved exactly by
backward induction over the remaining-step horizon (`absorption_probabilities`). The 60-step cap is therefore
modelled exactly, not approximated; with no horizon the same function solves the infinite chain with
`np.linalg.solve`, and the two agree to ~1e-6 at the first event (the cap is rarely binding).

To stay exact the chain state is the cart line count 0..MAX_CART_LINES, not just B/C1/C2/C3: counts >= 3 share
C3's probabilities (so behaviour is the spec's 4-state cart), but a removal from 5 lines leads to 4 lines (still
C3), not to C2. A full cart (MAX_CART_LINES lines, practically never reached) turns add_to_cart into product_view.

Everything is vectorised: the Python loop runs over chain steps (<= 60) for all live sessions at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from propensity.contract import EVENT_COLUMNS, EVENT_TIME_DTYPE
from propensity.sources import SourceBatch

SOURCE_NAME = "simulator"
# Chain steps per session: the first page_view is step 0, a purchase (however many rows) is one step. After
# step MAX_STEPS-1 the session is forced to exit; the truth models this exactly (it conditions on steps left).
MAX_STEPS = 60
MAX_CART_LINES = 10
N_PRODUCTS = 5_000
N_CATEGORIES = 100
MIN_SESSION_GAP_US = 31 * 60 * 1_000_000  # > 30 min: a 30-minute-gap sessioniser recovers our session ids
MAX_EVENT_GAP_S = 15 * 60  # well under the 30-minute sessionisation gap

# Actions, in the column order of the action table. Exit emits no event.
ACTIONS = (
    "page_view",
    "product_view",
    "search",
    "favourite",
    "add_to_cart",
    "remove_from_cart",
    "checkout_start",
    "purchase",
)
PV, PROD, SEARCH, FAV, ADD, REMOVE, CHECKOUT, PURCHASE, EXIT = range(9)
# State kinds: the transition probabilities of cart count n >= 3 are those of C3.
KIND_B, KIND_C1, KIND_C2, KIND_C3, KIND_K = range(5)
STATE_K = MAX_CART_LINES + 1  # state codes: 0..MAX_CART_LINES = cart lines, then checkout
N_STATES = MAX_CART_LINES + 2
_KIND_OF_STATE = np.where(np.arange(N_STATES) == STATE_K, KIND_K, np.minimum(np.arange(N_STATES), KIND_C3))

# Relative browse mix (page_view, product_view, search, favourite) while the cart is empty / holds items.
_BROWSE_MIX_B = np.array([0.25, 0.55, 0.13, 0.07])
_BROWSE_MIX_C = np.array([0.20, 0.60, 0.10, 0.10])

# Storefront traffic by UTC hour: night trough, evening peak.
_HOUR_WEIGHTS = np.array(
    [
        1.2,
        0.7,
        0.4,
        0.3,
        0.3,
        0.4,
        0.8,
        1.5,
        2.2,
        2.6,
        2.8,
        3.0,
        3.3,
        3.1,
        2.9,
        2.9,
        3.1,
        3.5,
        4.2,
        4.9,
        5.2,
        4.6,
        3.3,
        2.0,
    ]
)
_NIGHT = np.arange(24) < 6  # 00-05 UTC
_EVENING = (np.arange(24) >= 18) & (np.arange(24) <= 22)  # 18-22 UTC
# Evening visitors are a little more purposeful, late-night ones less (logit shift of the session intent).
_HOUR_INTENT = np.where(_NIGHT, -0.20, np.where(_EVENING, 0.15, 0.0))
# Checkout-start multiplier by UTC hour (module docstring).
_HOUR_CHECKOUT = np.where(_NIGHT, 0.35, np.where(_EVENING, 1.25, 1.0))
# Monday..Sunday: weekends are busier and slightly more purchase-minded.
_WEEKDAY_TRAFFIC = np.array([0.90, 0.85, 0.90, 0.95, 1.05, 1.30, 1.25])
_WEEKDAY_INTENT = np.array([0.0, 0.0, 0.0, 0.0, 0.05, 0.10, 0.10])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _action_table(intent: np.ndarray, checkout_factor=1.0) -> np.ndarray:
    """Action probabilities, shape (n, 5 kinds, 9 actions), each row summing to 1. Higher intent means fewer
    exits, more cart adds and checkouts, fewer removals, more completed checkouts; `checkout_factor` (per session,
    from its hour) scales checkout starts. Tuned for ~5 % session conversion and ~7 events per session."""
    p = np.asarray(intent, dtype=np.float64)[:, None]
    checkout_factor = np.broadcast_to(np.asarray(checkout_factor, dtype=np.float64), p.shape[:1])[:, None]
    table = np.zeros((len(p), 5, 9))

    exit_b = 0.15 - 0.06 * p
    add_b = 0.015 + 0.25 * p
    table[:, KIND_B, EXIT] = exit_b[:, 0]
    table[:, KIND_B, ADD] = add_b[:, 0]
    table[:, KIND_B, PV : FAV + 1] = (1.0 - exit_b - add_b) * _BROWSE_MIX_B

    for kind, n in ((KIND_C1, 0), (KIND_C2, 1), (KIND_C3, 2)):
        exit_c = 0.14 - 0.06 * p
        add_c = (0.10 + 0.15 * p) * (1.0, 0.8, 0.6)[n]
        remove_c = 0.08 * (1.0 - p)
        checkout_c = (0.04 + 0.45 * p) * (1.0, 1.1, 1.2)[n] * checkout_factor
        table[:, kind, EXIT] = exit_c[:, 0]
        table[:, kind, ADD] = add_c[:, 0]
        table[:, kind, REMOVE] = remove_c[:, 0]
        table[:, kind, CHECKOUT] = checkout_c[:, 0]
        table[:, kind, PV : FAV + 1] = (1.0 - exit_c - add_c - remove_c - checkout_c) * _BROWSE_MIX_C

    buy = 0.30 + 0.60 * p
    table[:, KIND_K, PURCHASE] = buy[:, 0]
    table[:, KIND_K, EXIT] = 1.0 - buy[:, 0]
    return table


def _transition_parts(table: np.ndarray) -> dict[str, np.ndarray]:
    """Per kind: P(stay), P(+1 line), P(-1 line), P(checkout), P(buy), each (5 kinds, n) and contiguous per
    kind, so the Bellman step below streams over sessions instead of striding."""
    return {
        "stay": np.ascontiguousarray(table[:, :, PV : FAV + 1].sum(axis=2).T),
        "add": np.ascontiguousarray(table[:, :, ADD].T),
        "remove": np.ascontiguousarray(table[:, :, REMOVE].T),
        "checkout": np.ascontiguousarray(table[:, :, CHECKOUT].T),
        "buy": np.ascontiguousarray(table[:, :, PURCHASE].T),
    }


def _bellman_step(h: np.ndarray, parts: dict[str, np.ndarray]) -> np.ndarray:
    """One step of backward induction, h_r = Q h_{r-1} + R_P, on h of shape (N_STATES, n), using the chain's
    banded structure (a cart only grows or shrinks by one line per step) instead of a dense matrix product."""
    out = np.empty_like(h)
    for n in range(MAX_CART_LINES + 1):
        k = _KIND_OF_STATE[n]
        if n == MAX_CART_LINES:  # a full cart cannot grow: add_to_cart became a product_view (stay)
            value = (parts["stay"][k] + parts["add"][k]) * h[n]
        else:
            value = parts["stay"][k] * h[n] + parts["add"][k] * h[n + 1]
        if n > 0:
            value += parts["remove"][k] * h[n - 1] + parts["checkout"][k] * h[STATE_K]
        out[n] = value
    out[STATE_K] = parts["buy"][KIND_K]
    return out


def absorption_probabilities(intent: np.ndarray, steps_left: int | None = None, checkout_factor=1.0) -> np.ndarray:
    """P(session ends in a purchase) from every transient state, shape (n, N_STATES) (columns: cart lines
    0..MAX_CART_LINES, then checkout). `steps_left=None` solves the uncapped chain exactly with a batch of
    np.linalg.solve calls; an int gives the exact value when at most that many further steps are allowed."""
    table = _action_table(np.asarray(intent, dtype=np.float64), checkout_factor)
    parts = _transition_parts(table)
    n = len(table)
    if steps_left is not None:
        h = np.zeros((N_STATES, n))
        for _ in range(steps_left):
            h = _bellman_step(h, parts)
        return h.T.copy()
    # (I - Q) h = R_P, one small system per session.
    q = np.zeros((n, N_STATES, N_STATES))
    for s in range(MAX_CART_LINES + 1):
        k = _KIND_OF_STATE[s]
        q[:, s, s] += parts["stay"][k]
        q[:, s, min(s + 1, MAX_CART_LINES)] += parts["add"][k]
        if s > 0:
            q[:, s, s - 1] += parts["remove"][k]
            q[:, s, STATE_K] += parts["checkout"][k]
    r = np.zeros((n, N_STATES, 1))
    r[:, STATE_K, 0] = parts["buy"][KIND_K]
    return np.linalg.solve(np.eye(N_STATES)[None] - q, r)[:, :, 0]


def _catalogue(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Products with Zipf-like popularity, a fixed category each, and lognormal prices (median ~30)."""
    category_weight = 1.0 / np.arange(1, N_CATEGORIES + 1) ** 0.8
    category = rng.choice(N_CATEGORIES, size=N_PRODUCTS, p=category_weight / category_weight.sum())
    popularity = 1.0 / rng.permutation(np.arange(1, N_PRODUCTS + 1)) ** 1.05
    category_price = rng.normal(0.0, 0.4, N_CATEGORIES)
    log_price = np.log(30.0) + category_price[category] + rng.normal(0.0, 0.6, N_PRODUCTS)
    price = np.round(np.maximum(np.exp(log_price), 0.5), 2)

    # Within-category sampling by inverse CDF: products ordered by category, one global cumulative weight.
    order = np.argsort(category, kind="stable")
    cum = np.cumsum(popularity[order])
    bounds = np.searchsorted(category[order], np.arange(N_CATEGORIES + 1))
    cum0 = np.concatenate([[0.0], cum])
    return {
        "category": category,
        "price": price,
        "global_cdf": np.cumsum(popularity) / popularity.sum(),
        "by_category": order,
        "cum": cum,
        "cat_lo": cum0[bounds[:-1]],
        "cat_hi": cum0[bounds[1:]],
        "category_cdf": np.cumsum(np.bincount(category, popularity, N_CATEGORIES)) / popularity.sum(),
    }


def _draw_products(rng: np.random.Generator, cat: dict[str, np.ndarray], focus: np.ndarray) -> np.ndarray:
    """A viewed product: 60 % from the session's focus category (shoppers browse around one need), else any."""
    n = len(focus)
    in_focus = rng.random(n) < 0.6
    u = rng.random(n)
    product = np.minimum(np.searchsorted(cat["global_cdf"], u, side="right"), N_PRODUCTS - 1)
    lo, hi = cat["cat_lo"][focus[in_focus]], cat["cat_hi"][focus[in_focus]]
    idx = np.searchsorted(cat["cum"], lo + u[in_focus] * (hi - lo), side="right")
    product[in_focus] = cat["by_category"][np.minimum(idx, N_PRODUCTS - 1)]
    return product


@dataclass(frozen=True)
class BehaviourShift:
    """A change in shopper behaviour from one simulated day on: session intents move by `intent_logit` on the
    log-odds scale (negative: shoppers buy less), so a model trained before the shift is miscalibrated after it and
    the in-session features move with the funnel. The closed-loop demo (`make loop`) turns this knob mid-way."""

    from_day: int  # 0-based day index within the simulated period
    intent_logit: float = -0.8


def _sessions(rng, n_users, days, start_date, rate, shift: BehaviourShift | None = None):
    """Session starts (µs since epoch, before de-overlapping), users, effective intents and UTC hours."""
    intent_u = np.clip(rng.beta(1.2, 8.0, n_users), 1e-6, 1 - 1e-6)
    activity_u = rng.gamma(1.5, 1.0 / 1.5, n_users)
    day0 = pd.Timestamp(start_date, tz="UTC").normalize()
    weekday = (day0.weekday() + np.arange(days)) % 7
    lam = rate * activity_u[:, None] * _WEEKDAY_TRAFFIC[weekday][None, :]  # (users, days)
    counts = rng.poisson(lam)
    user = np.repeat(np.repeat(np.arange(n_users), days), counts.ravel())
    day = np.repeat(np.tile(np.arange(days), n_users), counts.ravel())
    n = len(user)
    hour = rng.choice(24, size=n, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    offset = (rng.random(n) * 3_600_000_000).astype(np.int64)
    start = day0.value // 1000 + day * 86_400_000_000 + hour * 3_600_000_000 + offset
    z = _logit(intent_u[user]) + rng.normal(0.0, 0.5, n) + _HOUR_INTENT[hour] + _WEEKDAY_INTENT[weekday[day]]
    if shift is not None:
        z = z + np.where(day >= shift.from_day, shift.intent_logit, 0.0)
    return user, start.astype(np.int64), _sigmoid(z), hour


def _format_ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return np.array([f"{prefix}{i:0{width}d}" for i in numbers.tolist()], dtype=object)


@dataclass
class SessionWorld:
    """The running state of a set of sessions, one row each: the cart (a stack of lines, the last added on top),
    checkout, the clock, the last product viewed, the focus category and each session's action table as
    cumulative probabilities. `step` advances the live ones by one chain step; `simulate_traffic` runs whole
    sessions with it and `propensity.sources.interventions` continues sessions from a decision point under
    another table (an offer shown), with the same behaviour."""

    cdf: np.ndarray  # (n, 5 kinds, 9 actions), cumulative
    focus: np.ndarray
    lines: np.ndarray
    in_checkout: np.ndarray
    clock: np.ndarray  # µs since session start
    last_viewed: np.ndarray  # product index, -1 = none yet
    cart_product: np.ndarray  # (n, MAX_CART_LINES)
    cart_qty: np.ndarray

    @classmethod
    def fresh(cls, table: np.ndarray, focus: np.ndarray) -> SessionWorld:
        n = len(table)
        return cls(
            cdf=cumulative(table),
            focus=focus,
            lines=np.zeros(n, dtype=np.int64),  # kept through checkout so purchase rows can list them
            in_checkout=np.zeros(n, dtype=bool),
            clock=np.zeros(n, dtype=np.int64),
            last_viewed=np.full(n, -1, dtype=np.int64),
            cart_product=np.zeros((n, MAX_CART_LINES), dtype=np.int64),
            cart_qty=np.zeros((n, MAX_CART_LINES), dtype=np.int64),
        )

    def step(self, rng: np.random.Generator, cat: dict[str, np.ndarray], live: np.ndarray):
        """One chain step for the sessions in `live`: returns the step's rows (session, action, product,
        quantity, µs since session start, chain state right after the event, -1 = purchased) and the sessions
        still live after it."""
        state = np.where(self.in_checkout[live], STATE_K, self.lines[live])
        u = rng.random(len(live))
        action = (u[:, None] >= self.cdf[live, _KIND_OF_STATE[state]]).sum(axis=1)
        action[(action == ADD) & (state == MAX_CART_LINES)] = PROD  # full cart: see module docstring
        keep = action != EXIT
        s, action = live[keep], action[keep]
        n = len(s)

        gap_s = np.minimum(rng.lognormal(np.log(30.0), 0.9, n), MAX_EVENT_GAP_S)
        self.clock[s] += np.maximum((gap_s * 1_000_000).astype(np.int64), 1)

        # Products: views draw from the catalogue; favourites and cart adds often act on the last viewed one.
        product = np.full(n, -1, dtype=np.int64)
        qty = np.ones(n, dtype=np.int64)
        draws = (action == PROD) | (action == FAV) | (action == ADD)
        product[draws] = _draw_products(rng, cat, self.focus[s[draws]])
        last_viewed = self.last_viewed[s]
        reuse = (action != PROD) & draws & (last_viewed >= 0) & (rng.random(n) < np.where(action == ADD, 0.7, 0.5))
        product[reuse] = last_viewed[reuse]
        viewed = action == PROD
        self.last_viewed[s[viewed]] = product[viewed]

        lines, cart_product, cart_qty = self.lines, self.cart_product, self.cart_qty
        add = action == ADD
        sa = s[add]
        qty[add] = np.where(rng.random(len(sa)) < 0.08, 2, 1)
        cart_product[sa, lines[sa]] = product[add]
        cart_qty[sa, lines[sa]] = qty[add]
        lines[sa] += 1

        rem = action == REMOVE  # removes the line added last
        sr = s[rem]
        lines[sr] -= 1
        product[rem] = cart_product[sr, lines[sr]]
        qty[rem] = cart_qty[sr, lines[sr]]

        self.in_checkout[s[action == CHECKOUT]] = True
        post = np.where(self.in_checkout[s], STATE_K, lines[s])

        # A purchase is one row per cart line, all at the purchase time, then the session is over.
        buy = action == PURCHASE
        sb = s[buy]
        rep = np.repeat(sb, lines[sb])
        line_no = np.arange(len(rep)) - np.repeat(np.cumsum(lines[sb]) - lines[sb], lines[sb])
        other = ~buy
        chunk = (
            np.concatenate([s[other], rep]),
            np.concatenate([action[other], np.full(len(rep), PURCHASE)]),
            np.concatenate([product[other], cart_product[rep, line_no]]),
            np.concatenate([qty[other], cart_qty[rep, line_no]]),
            np.concatenate([self.clock[s[other]], self.clock[rep]]),
            np.concatenate([post[other], np.full(len(rep), -1)]),
        )
        return chunk, s[other]


def cumulative(table: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(table, axis=2)
    cdf[:, :, -1] = 1.0  # guard against rounding: u < 1 always lands on a defined action
    return cdf


def simulate_traffic(
    n_users: int = 2000,
    days: int = 7,
    start_date: str = "2026-11-02",
    seed: int = 7,
    sessions_per_user_day: float = 0.35,
    shift: BehaviourShift | None = None,
) -> SourceBatch:
    """Simulate `days` of storefront traffic for `n_users`; deterministic for a given seed and shift (a shift
    changes the whole world's random path, so simulate history and shifted days in one call).

    Returns contract-v1 events (sorted by event_time, event_id) and the truth frame
    [event_id, true_propensity]: the exact probability that the event's session ends in a purchase.
    """
    rng = np.random.default_rng(seed)
    cat = _catalogue(rng)
    user, start, intent, hour = _sessions(rng, n_users, days, start_date, sessions_per_user_day, shift)
    n_sess = len(user)
    checkout_factor = _HOUR_CHECKOUT[hour]
    table = _action_table(intent, checkout_factor)
    focus = np.minimum(np.searchsorted(cat["category_cdf"], rng.random(n_sess), side="right"), N_CATEGORIES - 1)
    world = SessionWorld.fresh(table, focus)

    # One chunk of rows per chain step: session, action, product, quantity, µs since session start, chain state
    # right after the event (-1 = purchased). Chunk t holds step t, which the truth needs (steps left = cap-1-t).
    live = np.arange(n_sess)
    ones = np.ones(n_sess, dtype=np.int64)
    chunks = [(live, np.full(n_sess, PV), np.full(n_sess, -1), ones, world.clock.copy(), world.lines.copy())]
    for _ in range(1, MAX_STEPS):  # after step MAX_STEPS-1 every live session is forced to exit
        if len(live) == 0:
            break
        chunk, live = world.step(rng, cat, live)
        chunks.append(chunk)

    sessions = pd.DataFrame(
        {
            "intent": intent,
            "hour": hour,
            "checkout_factor": checkout_factor,
            "focus_category": focus,
            "user_index": user,
        }
    )
    return _assemble(seed, n_users, chunks, user, start, table, cat, world.clock, sessions)


def _truth(chunks, table: np.ndarray) -> list[np.ndarray]:
    """Exact P(purchase) after each event of each step chunk: backward induction over steps left, so that the
    values of horizon r are computed once for every session and gathered for the events of step MAX_STEPS-1-r."""
    parts = _transition_parts(table)
    out: list[np.ndarray | None] = [None] * len(chunks)
    h = np.zeros((N_STATES, len(table)))
    for r in range(MAX_STEPS):
        t = MAX_STEPS - 1 - r
        if t < len(chunks):
            sess, post = chunks[t][0], chunks[t][5]
            out[t] = np.where(post < 0, 1.0, h[np.maximum(post, 0), sess])
        h = _bellman_step(h, parts)
    return out  # type: ignore[return-value]


def _assemble(seed, n_users, chunks, user, start, table, cat, duration, sessions) -> SourceBatch:
    truth = np.concatenate(_truth(chunks, table))
    sess, action, product, qty, rel, _ = (np.concatenate(c) for c in zip(*chunks))

    # De-overlap a user's sessions: each starts at least MIN_SESSION_GAP after the previous one ended, i.e.
    # start'_i = max(start_i, end'_{i-1} + gap). With D_i = sum_{j<i}(duration_j + gap) inside the user, this is
    # start'_i = D_i + cummax(start_i - D_i), a grouped cumulative max instead of a Python loop. Shifts are rare
    # (two sessions of a user colliding on a day) and keep the intent drawn for the planned start hour.
    order = np.lexsort((start, user))
    u_sorted, s_sorted = user[order], start[order]
    d_sorted = duration[order] + MIN_SESSION_GAP_US
    shift = pd.Series(d_sorted).groupby(u_sorted).cumsum().to_numpy() - d_sorted
    running = pd.Series(s_sorted - shift).groupby(u_sorted).cummax().to_numpy()
    new_start = np.empty_like(start)
    new_start[order] = running + shift

    # Session ids in order of start time, like a storefront issuing them.
    session_rank = np.empty(len(start), dtype=np.int64)
    session_rank[np.lexsort((np.arange(len(start)), new_start))] = np.arange(len(start))

    time_us = new_start[sess] + rel
    # Chronological event ids: sort by time, then session and position within the session (stable).
    row_order = np.lexsort((np.arange(len(sess)), session_rank[sess], time_us))
    sess, action, product, qty, time_us, truth = (a[row_order] for a in (sess, action, product, qty, time_us, truth))

    prefix = f"sim{seed}-"
    n = len(sess)
    event_id = _format_ids(prefix, np.arange(n), max(9, len(str(n - 1))))
    session_str = _format_ids(prefix + "s", np.arange(len(start)), max(7, len(str(len(start) - 1))))
    user_str = _format_ids("u", np.arange(n_users), max(5, len(str(n_users - 1))))
    events = event_frame(
        event_id, time_us, user_str[user[sess]], session_str[session_rank[sess]], action, product, qty, cat
    )
    truth_frame = pd.DataFrame({"event_id": event_id, "true_propensity": truth.astype(np.float64)})
    sessions.insert(0, "session_id", session_str[session_rank])
    return SourceBatch(events=events, truth=truth_frame, sessions=sessions)


_PRODUCT_IDS = np.array([*_format_ids("p", np.arange(N_PRODUCTS), 5), None], dtype=object)  # index -1 -> None
_CATEGORY_IDS = np.array([*_format_ids("c", np.arange(N_CATEGORIES), 3), None], dtype=object)


def event_frame(event_id, time_us, user_id, session_id, action, product, qty, cat) -> pd.DataFrame:
    """Contract-shaped events from the chain's codes: action, product index (-1 none), quantity, µs since epoch."""
    product = np.asarray(product)
    has_product = product >= 0
    category = np.where(has_product, cat["category"][np.maximum(product, 0)], -1)
    return pd.DataFrame(
        {
            "event_id": event_id,
            "event_time": pd.Series(np.asarray(time_us).astype("datetime64[us]"))
            .dt.tz_localize("UTC")
            .astype(EVENT_TIME_DTYPE),
            "user_id": user_id,
            "session_id": session_id,
            "event_type": np.array(ACTIONS + ("exit",), dtype=object)[action],
            "product_id": _PRODUCT_IDS[product],
            "category_id": _CATEGORY_IDS[category],
            "price": np.where(has_product, cat["price"][np.maximum(product, 0)], np.nan),
            "quantity": np.asarray(qty).astype(np.int64),
            "source": np.full(len(product), SOURCE_NAME, dtype=object),
        },
        columns=list(EVENT_COLUMNS),
    )
