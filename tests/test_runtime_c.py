"""The runtime's C unit and stress tests (runtime/tests/*.c), built and run through `make -C runtime test`.

Each C test binary prints one "PASS name" / "FAIL name" line per case; this test fails if the
build fails, any case fails, or an expected case did not run.
"""

import os
import subprocess
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"

EXPECTED_CASES = [
    # test_ring
    "ring_layout", "ring_fill_drain_wrap", "record_checksum", "ring_threads_stress", "ring_process_stress",
    "region_attach_errors", "region_ring_wakes_a_sleeper", "fol_wake_wakes_a_waiting_thread",
    # test_record
    "record_orders_and_release", "replay_reproduces", "replay_detects_divergence", "passthrough_mode",
    "sleeps_replay_at_once",
    "atomics_logged_semantics",
    "setup_errors", "arena_deterministic", "arena_same_addresses_run_to_run", "receive_path", "inline_fast_path",
    "quiet_record_after_a_loud_one", "verifier_waits_for_a_slow_output_logger", "early_thread_index", "corrupt_record_held", "duplicate_outputs_dropped", "logger_death_noticed", "input_logger_serves_again",
    "unknown_start_routine_refused",
    # test_release
    "release_rule_under_concurrency",
    # test_deathwatch
    "killed_master_is_dead", "claimed_unlocked_slot_keeps_it_alive", "done_master_did_not_die",
    "no_coordinator_no_answer",
]


def test_runtime_c_tests_pass():
    env = dict(os.environ, STRESS_SECONDS=os.environ.get("STRESS_SECONDS", "1"))
    proc = subprocess.run(["make", "-s", "-C", str(RUNTIME), "-j2", "test"], capture_output=True, text=True,
                          env=env, timeout=600)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    lines = proc.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAIL")]
    assert not failed, report
    passed = {line.split()[1] for line in lines if line.startswith("PASS")}
    missing = [case for case in EXPECTED_CASES if case not in passed]
    assert not missing, f"cases that did not run: {missing}\n{report}"
