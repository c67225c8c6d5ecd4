"""Erlang C against published table values."""

from __future__ import annotations

import math

import pytest

from switchboard_tools.loadgen.erlang import average_speed_of_answer, predict, probability_of_wait, service_level

# The classic Erlang C table for 10 Erlangs of offered traffic (e.g. 100 calls/hour of 6 minutes), probability of
# waiting by number of agents, as printed in call-centre staffing tables and by the Erlang C calculators
# (10 E / 11 agents 68.21 %, 12: 44.94 %, 13: 28.53 %, 14: 17.41 %, 15: 10.20 %).
TABLE_10_ERLANGS = {11: 0.6821, 12: 0.4494, 13: 0.2853, 14: 0.1741, 15: 0.1020}


@pytest.mark.parametrize(("agents", "expected"), sorted(TABLE_10_ERLANGS.items()))
def test_probability_of_wait_matches_the_10_erlang_table(agents: int, expected: float) -> None:
    assert probability_of_wait(10.0, agents) == pytest.approx(expected, abs=5e-5)


def test_small_case_by_hand() -> None:
    # A = 2, N = 3: (A^N/N! · N/(N−A)) / (1 + A + A²/2 + that) = 4 / (5 + 4) = 4/9.
    assert probability_of_wait(2.0, 3) == pytest.approx(4 / 9)


def test_service_level_and_asa_follow_from_the_wait_probability() -> None:
    # 10 E, 12 agents, 180 s handling: SL(20 s) = 1 − Pw·e^(−2·20/180); ASA = Pw·180/2.
    pw = 0.4494
    assert service_level(10.0, 12, 180.0, 20.0) == pytest.approx(1 - pw * math.exp(-40 / 180), abs=1e-4)
    assert average_speed_of_answer(10.0, 12, 180.0) == pytest.approx(pw * 90, abs=0.01)


def test_overloaded_queue_waits_always() -> None:
    assert probability_of_wait(12.0, 10) == 1.0
    assert service_level(12.0, 10, 60.0, 20.0) == 0.0
    assert math.isinf(average_speed_of_answer(12.0, 10, 60.0))


def test_hundreds_of_agents_do_not_overflow() -> None:
    pw = probability_of_wait(480.0, 500)
    assert 0.0 < pw < 1.0


def test_predict_from_measured_rate_and_handling_time() -> None:
    p = predict(arrival_rate_per_s=100 / 3600, aht_s=360.0, servers=13, targets_s=(20.0, 180.0))
    assert p.traffic_erlangs == pytest.approx(10.0)
    assert p.probability_of_wait == pytest.approx(TABLE_10_ERLANGS[13], abs=5e-5)
    assert p.occupancy == pytest.approx(10 / 13)
    assert p.service_level[20.0] < p.service_level[180.0]
