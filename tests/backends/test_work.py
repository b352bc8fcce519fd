"""Cutting a template into work units: extranonce2 counter, nonce ranges, ntime rolling."""

import pytest

from backends.work import MAX_NTIME_ROLL_S, NONCE_SPACE, Extranonce2Counter, WorkCursor, WorkTemplate
from mining.hashing import sha256d
from mining.merkle import merkle_root_from_branch
from tests.stratum_peers import regtest_job


def _template(extranonce2_size: int = 4, received_at: float = 100.0) -> WorkTemplate:
    job = regtest_job(4)  # cut from the template with three transactions: a merkle branch of three hashes
    return WorkTemplate(job, bytes.fromhex("01020304"), extranonce2_size, 1.0, 1 << 240, received_at)


def test_units_walk_the_nonce_space_then_step_extranonce2() -> None:
    counter = Extranonce2Counter(4)
    cursor = WorkCursor(_template(), counter)
    first = cursor.next_unit(NONCE_SPACE - 10, 100.0)
    second = cursor.next_unit(100, 100.0)
    third = cursor.next_unit(100, 100.0)
    assert first is not None and second is not None and third is not None
    assert (first.nonce_start, first.nonce_count) == (0, NONCE_SPACE - 10)
    assert (second.nonce_start, second.nonce_count) == (NONCE_SPACE - 10, 10)  # cut at the end
    assert first.extranonce2 == second.extranonce2 == bytes(4)
    assert third.extranonce2 == (1).to_bytes(4, "little") and third.nonce_start == 0


def test_next_template_takes_a_fresh_extranonce2() -> None:
    counter = Extranonce2Counter(2)
    a = WorkCursor(_template(2), counter).next_unit(10, 0.0)
    b = WorkCursor(_template(2), counter).next_unit(10, 0.0)
    assert a is not None and b is not None and a.extranonce2 != b.extranonce2


def test_exhausted_extranonce2_space_ends_the_template() -> None:
    cursor = WorkCursor(_template(0), Extranonce2Counter(0))
    assert cursor.next_unit(NONCE_SPACE, 0.0) is not None
    assert cursor.next_unit(1, 0.0) is None


def test_ntime_follows_the_clock_but_never_past_the_limit() -> None:
    template = _template(received_at=100.0)
    cursor = WorkCursor(template, Extranonce2Counter(4))
    assert cursor.ntime_at(50.0) == template.job.ntime  # a clock behind the job never rolls back
    assert cursor.ntime_at(130.9) == template.job.ntime + 30
    assert cursor.ntime_at(100.0 + 10 * MAX_NTIME_ROLL_S) == template.job.ntime + MAX_NTIME_ROLL_S


def test_unit_header_prefix_is_the_job_header() -> None:
    template = _template()
    unit = WorkCursor(template, Extranonce2Counter(4)).next_unit(10, 103.0)
    assert unit is not None
    job = template.job
    root = merkle_root_from_branch(sha256d(job.coinbase(template.extranonce1, unit.extranonce2)),
                                   job.merkle_branch)
    assert unit.header_prefix() + bytes(4) == job.header(template.extranonce1, unit.extranonce2,
                                                          job.ntime + 3, 0)
    assert unit.header_prefix()[36:68] == root


def test_counter_size_must_match() -> None:
    with pytest.raises(ValueError):
        WorkCursor(_template(4), Extranonce2Counter(2))
    with pytest.raises(ValueError):
        Extranonce2Counter(-1)
