"""ELO ratings from pairwise preferences (the blind comparison tool's votes), as pure functions.

A game is ``(a, b, score_a)`` with score_a 1 (a preferred), 0.5 (tie) or 0 (b preferred). Online
Elo depends on the order of the games, so the rating is the median over `rounds` seeded shuffles
of the games (with the 2.5-97.5 percentile band of those shuffles), the way chatbot-arena style
leaderboards report it. Every model starts at `base`; K is the step size.
"""

from __future__ import annotations

import random
from typing import Iterable, Sequence

SCORES = {"1": 1.0, "2": 0.0, "tie": 0.5}


def expected(r_a: float, r_b: float) -> float:
    """Expected score of a against b."""
    return 1.0 / (1.0 + 10 ** ((r_b - r_a) / 400.0))


def elo_once(games: Sequence[tuple[str, str, float]], k: float = 16.0, base: float = 1000.0, models: Iterable[str] = ()) -> dict[str, float]:
    ratings = {m: base for m in models}
    for a, b, s in games:
        ra, rb = ratings.setdefault(a, base), ratings.setdefault(b, base)
        e = expected(ra, rb)
        ratings[a] = ra + k * (s - e)
        ratings[b] = rb + k * ((1 - s) - (1 - e))
    return ratings


def elo_ratings(games: Sequence[tuple[str, str, float]], k: float = 16.0, base: float = 1000.0,
                rounds: int = 200, seed: int = 0) -> dict[str, dict]:
    """{model: {elo, low, high, games, wins, ties, losses}}, sorted by elo (best first)."""
    games = [(a, b, float(s)) for a, b, s in games]
    for a, b, s in games:
        if a == b:
            raise ValueError(f"a game of {a!r} against itself")
        if s not in (0.0, 0.5, 1.0):
            raise ValueError(f"score must be 0, 0.5 or 1, got {s}")
    models = sorted({m for a, b, _ in games for m in (a, b)})
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {m: [] for m in models}
    order = list(games)
    for _ in range(max(1, rounds)):
        rng.shuffle(order)
        r = elo_once(order, k, base, models)
        for m in models:
            samples[m].append(r[m])
    out = {}
    for m in models:
        xs = sorted(samples[m])
        lo, hi = xs[int(0.025 * (len(xs) - 1))], xs[int(round(0.975 * (len(xs) - 1)))]
        wins = sum((a == m and s == 1) or (b == m and s == 0) for a, b, s in games)
        ties = sum(m in (a, b) and s == 0.5 for a, b, s in games)
        n = sum(m in (a, b) for a, b, _ in games)
        mid = len(xs) // 2
        median = xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2
        out[m] = {"elo": median, "low": lo, "high": hi, "games": n, "wins": wins, "ties": ties, "losses": n - wins - ties}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["elo"]))


def games_from_votes(ballots: dict[str, list[str]], votes: Iterable[dict]) -> list[tuple[str, str, float]]:
    """Votes ({ballot, winner: "1" | "2" | "tie"}) on anonymised ballots -> games between the models
    the key says were shown as response 1 and response 2. A later vote on a ballot replaces an
    earlier one; a vote on an unknown ballot or with another winner is an error."""
    last: dict[str, str] = {}
    for i, v in enumerate(votes, 1):
        bid, winner = str(v.get("ballot")), str(v.get("winner"))
        if bid not in ballots:
            raise ValueError(f"vote {i}: unknown ballot {bid!r}")
        if winner not in SCORES:
            raise ValueError(f"vote {i}: winner must be 1, 2 or tie, got {winner!r}")
        last[bid] = winner
    return [(ballots[b][0], ballots[b][1], SCORES[w]) for b, w in last.items()]
