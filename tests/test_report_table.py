from __future__ import annotations

import io

from rich.console import Console
from test_report_sample import sample_report

from ftmb_instrument.report import table


def rendered(width: int = 100) -> str:
    return table.to_text(sample_report(), width=width)


def test_fits_in_100_columns() -> None:
    assert max(len(line.rstrip()) for line in rendered().splitlines()) <= 100


def test_shows_coverage_and_that_results_are_incomplete() -> None:
    text = rendered()
    assert "1 translation unit analyzed, 1 failed, 6 functions" in text.splitlines()[0]
    assert "Results are incomplete" in text
    assert "broken.c:7:9: expected ';'" in text


def test_lists_threads() -> None:
    text = rendered()
    assert all(name in text for name in ("worker", "pthread_create", "several", "on_signal", "nat.c:83"))


def test_variables_come_shared_rw_first_races_first_with_their_locks() -> None:
    rows = [line for line in rendered().splitlines() if line.startswith("│")]
    names = [row.split("│")[1].strip() for row in rows]
    start = names.index("counter")
    assert names[start:start + 8] == [
        "counter", "quiet_drops", "nat_init:malloc:stats", "flows", "hits", "config", "core_stats", "scratch",
    ]
    (flows,) = [row for row in rows if row.split("│")[1].strip() == "flows"]
    assert [cell.strip() for cell in flows.split("│")[2:-1]] == ["shared_rw", "lock (flow_lock)", "no", "2", "nat.c:15"]


def test_marks_suppressed_variables_and_gives_the_reason() -> None:
    text = rendered()
    assert "unprotected*" in text
    assert "* quiet_drops is suppressed: statistics only, off by one is fine" in text


def test_shows_nondeterminism_packet_io_and_warnings() -> None:
    text = rendered()
    for expected in ("Nondeterminism", "time", "Packet I/O", "rte_eth_rx_burst", "rte_eth_tx_burst",
                     "Warnings", "invisible_state", "indirect call through ops->handle"):
        assert expected in text


def test_empty_sections_say_so() -> None:
    from dataclasses import replace

    text = table.to_text(replace(sample_report(), nondeterminism=(), packet_io=(), warnings=(), threads=()))
    for expected in ("Nondeterminism: none found.", "Packet I/O: none found.", "Warnings: none.", "Threads: none found."):
        assert expected in text


def test_render_writes_to_the_given_console() -> None:
    buffer = io.StringIO()
    table.render(sample_report(), Console(file=buffer, width=100, color_system=None))
    assert buffer.getvalue() == rendered()
