"""Erlang C (M/M/N with an unlimited queue): what queueing theory predicts for a measured load.

    A  = arrival rate × mean handling time   (offered traffic, in Erlangs)
    Pw = probability that a customer waits     (Erlang C)
    SL(T) = 1 − Pw · e^(−(N − A) · T / AHT)   (share answered within T)
    ASA = Pw · AHT / (N − A)                   (average speed of answer)

Pw is computed from Erlang B by its stable recurrence, B(0) = 1, B(n) = A·B(n−1) / (n + A·B(n−1)), then
Pw = N·B / (N − A·(1 − B)); no factorials, so hundreds of agents and Erlangs do not overflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def erlang_b(traffic: float, servers: int) -> float:
    """Blocking probability of Erlang B for `traffic` Erlangs offered to `servers` servers."""
    if traffic < 0 or servers < 0:
        raise ValueError("traffic and servers must not be negative")
    b = 1.0
    for n in range(1, servers + 1):
        b = traffic * b / (n + traffic * b)
    return b


def probability_of_wait(traffic: float, servers: int) -> float:
    """Erlang C: the probability that an arriving customer waits; 1.0 when traffic ≥ servers (unstable queue)."""
    if servers <= 0 or traffic >= servers:
        return 1.0
    if traffic == 0:
        return 0.0
    b = erlang_b(traffic, servers)
    return servers * b / (servers - traffic * (1 - b))


def service_level(traffic: float, servers: int, aht_s: float, target_s: float) -> float:
    """Share of customers answered within `target_s` seconds."""
    if servers <= traffic:
        return 0.0
    pw = probability_of_wait(traffic, servers)
    return 1.0 - pw * math.exp(-(servers - traffic) * target_s / aht_s)


def average_speed_of_answer(traffic: float, servers: int, aht_s: float) -> float:
    """Mean wait in seconds over all customers (inf when the queue is unstable)."""
    if servers <= traffic:
        return math.inf
    return probability_of_wait(traffic, servers) * aht_s / (servers - traffic)


@dataclass(frozen=True)
class ErlangPrediction:
    """What Erlang C predicts for one measured load."""

    arrival_rate_per_s: float
    aht_s: float
    servers: int
    traffic_erlangs: float
    occupancy: float
    probability_of_wait: float
    asa_s: float
    service_level: dict[float, float]


def predict(arrival_rate_per_s: float, aht_s: float, servers: int, targets_s: tuple[float, ...]) -> ErlangPrediction:
    """Erlang C for `arrival_rate_per_s` arrivals with mean handling time `aht_s` on `servers` servers."""
    traffic = arrival_rate_per_s * aht_s
    return ErlangPrediction(
        arrival_rate_per_s=arrival_rate_per_s,
        aht_s=aht_s,
        servers=servers,
        traffic_erlangs=traffic,
        occupancy=min(1.0, traffic / servers) if servers else 1.0,
        probability_of_wait=probability_of_wait(traffic, servers),
        asa_s=average_speed_of_answer(traffic, servers, aht_s),
        service_level={t: service_level(traffic, servers, aht_s, t) for t in targets_s},
    )
