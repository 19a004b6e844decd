"""pthread + libpcap programs under FTMB: the corpus's pt_* programs that capture with libpcap and
examples/flowmon, built with ftmb-cc (which links runtime/src/pcap_adapter.c, libftmb_pcap, since
they link -lpcap), run by `run` between the loggers.

- Record mode gives the output of a run outside FTMB: the pt_* programs' summary lines equal the
  uninstrumented program's on the same trace (they send nothing; the line is their output);
  flowmon's released frames equal, per flow, those of a passthrough run through the same loggers,
  its counters equal the uninstrumented program's, and its invariants hold on both.
- Outside a session the same instrumented binary reads its file with libpcap itself.
- Failover, from the warm standby and from the newest checkpoint, six per program (killed early,
  midway and late in the input; each instant drawn at random, seed printed): the backup goes live,
  the output is the uninterrupted run's (summary line; flowmon:
  its invariants on the released frames), and the verification replay regenerates every released
  packet with the same bytes (flowmon sends thousands; the pt_* programs none).
- flowmon on a "live" handle (-i): in a session it is a session queue whose dispatch times out
  (100 ms) until the run's SIGINT sets the stop flag, and a failover replays those timeouts.
No timing is asserted.
"""

from __future__ import annotations

import random
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from ftmb_instrument import invariants as inv
from ftmb_instrument import pcap, run as runlib, traffic

ROOT = Path(__file__).resolve().parents[1]
FTMB_CC = ROOT / ".venv" / "bin" / "ftmb-cc"
CORPUS = ROOT / "corpus"
FLOWS = CORPUS / "data" / "flows.pcap"
FLOWMON_ARGS = ["--workers", "3", "--export-ms", "20", "--idle-ms", "50"]

# program -> (source, its arguments after the trace, master threads)
PROGRAMS = {
    "pt_pcap_queue": (CORPUS / "pt_pcap_queue.c", ["3"]),
    "pt_pcap_loop_cb": (CORPUS / "pt_pcap_loop_cb.c", []),
    "pt_ids_pcap": (CORPUS / "pt_ids_pcap.c", ["3"]),
    "flowmon": (ROOT / "examples" / "flowmon" / "flowmon.c", FLOWMON_ARGS),
}


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    plain, instr = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("instrumented")
    for name, (src, _) in PROGRAMS.items():
        subprocess.run(["gcc", "-std=gnu11", "-O2", "-Wall", "-pthread", str(src), "-o", str(plain / name), "-lpcap"],
                       check=True, capture_output=True, timeout=120)
        res = subprocess.run([str(FTMB_CC), "-std=gnu11", "-O2", "-Wall", "-pthread", str(src), "-o",
                              str(instr / name), "-lpcap"], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
    return plain, instr


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "flows.pcap"
    traffic.generate(path, seed=11, flows=60, packets=2000, duration_s=0.3)
    return path


def _argv(binary: Path, name: str, trace_path: Path) -> list[str]:
    args = PROGRAMS[name][1]
    return [str(binary), "-r", str(trace_path), *args] if name == "flowmon" else [str(binary), str(trace_path), *args]


def _input(name: str, trace_path: Path) -> Path:
    return trace_path if name == "flowmon" else FLOWS


def _summary(stdout: str, name: str) -> str:
    lines = [ln for ln in stdout.splitlines() if ln.startswith(f"{name}:")]
    assert lines, f"no summary line in {stdout!r}"
    # flowmon's idle exports depend on timing; what it captured, forwarded and exported in all does not
    if name == "flowmon":
        counts = dict(re.findall(r"(\w+)=(\d+)", lines[-1]))
        return (f"captured={counts['captured']} forwarded={counts['forwarded']} untracked={counts['untracked']} "
                f"exported={int(counts['exported_idle']) + int(counts['exported_final'])}")
    return lines[-1]


def _plain_summary(builds, name: str, trace_path: Path) -> str:
    plain, _ = builds
    res = subprocess.run(_argv(plain / name, name, _input(name, trace_path)), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    out = _summary(res.stdout, name)
    if name == "flowmon":  # outside a session a savefile cannot send: it exports what it counted
        out = re.sub(r"exported=\d+", "", out)
    return out


def _per_flow(path: Path) -> dict:
    flows = defaultdict(list)
    for pkt in pcap.iter_pcap(path):
        p = pcap.parse(pkt.data)
        key = inv.flowmon_key(p)
        if p.ethertype != inv.FLOWMON_ETHERTYPE:
            flows[key].append(pkt.data)
    return flows


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_record_mode_gives_the_plain_output(builds, trace, tmp_path, name):
    plain, instr = builds
    inp = _input(name, trace)
    rec = runlib.run(_argv(instr / name, name, inp), inp, tmp_path / "rec.pcap", threads=8,
                     timeout_s=60)
    assert rec.ok, f"{rec.failure}\n{rec.nf_stderr[-2000:]}"
    want = _plain_summary(builds, name, trace)
    got = _summary(rec.nf_stdout, name)
    if name != "flowmon":
        assert got == want
        return
    assert re.sub(r"exported=\d+", "", got) == want
    pas = runlib.run(_argv(instr / name, name, inp), inp, tmp_path / "pass.pcap", mode="passthrough",
                     threads=8, timeout_s=60)
    assert pas.ok, pas.failure
    assert _per_flow(tmp_path / "rec.pcap") == _per_flow(tmp_path / "pass.pcap")
    for out in ("rec.pcap", "pass.pcap"):
        violations = inv.check_flowmon(trace, tmp_path / out)
        assert not violations, f"{out}: " + "\n".join(map(str, violations[:10]))
    assert rec.released == 2000 + int(re.search(r"exported=(\d+)", got).group(1))


@pytest.mark.parametrize("name", ["pt_pcap_queue", "flowmon"])
def test_outside_a_session_libpcap_reads_the_file(builds, trace, name):
    """No FTMB_SESSION: the adapter hands every call to libpcap (passthrough on real files)."""
    plain, instr = builds
    res = subprocess.run(_argv(instr / name, name, _input(name, trace)), capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    got = _summary(res.stdout, name)
    if name == "flowmon":
        got = re.sub(r"exported=\d+", "", got)
    assert got == _plain_summary(builds, name, trace)


KILL_SLOTS = 3  # kill instants per program and kind of failover: one drawn in each third of the window


def _failover(builds, trace, tmp_path, name, checkpoint_ms, argv=None, slot=None):
    """A failover at an instant drawn in the kill window (in its `slot`-th of KILL_SLOTS parts)."""
    inp = _input(name, trace)
    # the pt_* trace is 256 packets (0.43 s at 600/s), flowmon's 2000 (0.4 s at 5000/s): the window,
    # seconds after the master's first input (a slow start-up moves it along), ends well before the
    # input does, so that a slow machine still kills a master that is running
    rate, lo, hi = (5000, 0.12, 0.28) if name == "flowmon" else (600, 0.06, 0.27)
    if checkpoint_ms is not None:  # after the first checkpoint (pt_pcap_loop_cb's came at 0.09-0.12 s)
        lo = max(lo, 0.12)
    if slot is not None:
        lo, hi = lo + (hi - lo) * slot / KILL_SLOTS, lo + (hi - lo) * (slot + 1) / KILL_SLOTS
    for _ in range(3):  # a master that finished before its kill was due (a starved run) is no failover: again
        seed = random.SystemRandom().randrange(1 << 20)
        kill_at = random.Random(seed).uniform(lo, hi)
        print(f"{name}: seed {seed}: kill at {kill_at:.3f} s, checkpoints {checkpoint_ms}")
        res = runlib.run(argv or _argv(builds[1] / name, name, inp), inp, tmp_path / "out.pcap", threads=8,
                         rate=rate, kill_master_at=kill_at, kill_from_input=True, checkpoint_ms=checkpoint_ms,
                         timeout_s=90)
        if not (res.ok and res.failover is None):
            break
        print(f"{name}: seed {seed}: the master finished before its kill")
    where = f"seed {seed}: " + "\n".join(f"{p.name} {p.status}: {p.stderr_tail[-600:]}" for p in res.processes)
    assert res.ok, f"{res.failure}\n{where}"
    assert res.failover is not None and res.failover.recovered, where
    assert res.failover.from_snapshot == (checkpoint_ms is not None), where
    check = res.replay_check
    assert check is not None and check.failure is None, where
    assert check.mismatches == 0 and check.compared == check.released == res.released, f"{check}\n{where}"
    assert res.held == 0
    return res


@pytest.mark.parametrize("slot", range(KILL_SLOTS))
@pytest.mark.parametrize("checkpoint_ms", [None, 20], ids=["standby", "checkpoint"])
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_failover(builds, trace, tmp_path, name, checkpoint_ms, slot):
    """Six failovers per program: standby and checkpoint, each killed early, midway and late."""
    res = _failover(builds, trace, tmp_path, name, checkpoint_ms, slot=slot)
    got = _summary(res.nf_stdout, name)
    if name != "flowmon":
        assert got == _plain_summary(builds, name, trace)
        return
    assert re.sub(r"exported=\d+", "", got) == _plain_summary(builds, name, trace)
    violations = inv.check_flowmon(trace, tmp_path / "out.pcap")
    assert not violations, "\n".join(map(str, violations[:10]))
    assert res.released > 2000


@pytest.mark.parametrize("checkpoint_ms", [None, 20], ids=["standby", "checkpoint"])
def test_flowmon_live_handle_failover(builds, trace, tmp_path, checkpoint_ms):
    """-i: pcap_open_live in a session; its dispatch times out every 100 ms once the input ends,
    until the run's SIGINT; the stop flag and each timeout's outcome are in the log."""
    _, instr = builds
    argv = [str(instr / "flowmon"), "-i", "eth0", *FLOWMON_ARGS]
    _failover(builds, trace, tmp_path, "flowmon", checkpoint_ms, argv=argv)
    violations = inv.check_flowmon(trace, tmp_path / "out.pcap")
    assert not violations, "\n".join(map(str, violations[:10]))


def test_config_libs_pcap_names_the_adapter():
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "ftmb-instrument"), "config", "--libs", "--pcap"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    assert words[0].endswith("libftmb_pcap.a") and words[1].endswith("libftmb.a"), words


def test_verify_example_flowmon_after_a_failover(builds, trace, tmp_path):
    """`verify --example flowmon`: a failover run's released output passes; the same output with one
    forwarded frame lost, or two frames of one flow swapped, does not."""
    from ftmb_instrument import verify as verifylib
    _, instr = builds
    _failover(builds, trace, tmp_path, "flowmon", None)
    argv = _argv(instr / "flowmon", "flowmon", trace)
    v = verifylib.verify(argv, trace, tmp_path / "out.pcap", queues=1, threads=8, example="flowmon",
                         workdir=tmp_path)
    assert v.ok, "\n".join(map(str, v.violations[:10]))
    frames = pcap.read_pcap(tmp_path / "out.pcap")
    by_flow = defaultdict(list)
    for i, f in enumerate(frames):
        p = pcap.parse(f.data)
        if p.ethertype != inv.FLOWMON_ETHERTYPE and inv.flowmon_key(p) is not None:
            by_flow[inv.flowmon_key(p)].append(i)
    a, b = next(idx for idx in by_flow.values() if len(idx) >= 2)[:2]
    swapped = list(frames)
    swapped[a], swapped[b] = swapped[b], swapped[a]
    pcap.write_pcap(tmp_path / "swapped.pcap", swapped)
    pcap.write_pcap(tmp_path / "lost.pcap", frames[:a] + frames[a + 1:])
    for bad, name in (("swapped.pcap", "flowmon.order"), ("lost.pcap", "flowmon.lost")):
        names = {x.invariant for x in inv.check_flowmon(trace, tmp_path / bad)}
        assert name in names, (bad, names)


# A capture thread hands frames to a sender through a ring guarded by two counting semaphores
# (free and used slots); the sender waits with sem_timedwait so that it can look at the end flag;
# a trywait counts how often the ring was full. Every frame leaves unchanged, in order.
SEMFWD = r"""
#include <errno.h>
#include <pcap/pcap.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define SLOTS 8
static struct { unsigned len; unsigned char data[2048]; } ring[SLOTS];
static sem_t free_slots, used_slots;
static pcap_t *handle;
static int done;
static unsigned long sent, timeouts, full;

static void *capture(void *arg)
{
	(void)arg;
	struct pcap_pkthdr *h;
	const u_char *data;
	unsigned i = 0;
	while (pcap_next_ex(handle, &h, &data) == 1) {
		if (sem_trywait(&free_slots) != 0) {
			full++;
			sem_wait(&free_slots);
		}
		ring[i].len = h->caplen < 2048 ? h->caplen : 2048;
		memcpy(ring[i].data, data, ring[i].len);
		i = (i + 1) % SLOTS;
		sem_post(&used_slots);
	}
	__atomic_store_n(&done, 1, __ATOMIC_RELEASE);
	sem_post(&used_slots);
	return NULL;
}

static void *sender(void *arg)
{
	(void)arg;
	unsigned i = 0;
	for (;;) {
		struct timespec t;
		clock_gettime(CLOCK_REALTIME, &t);
		t.tv_nsec += 5000000;
		if (t.tv_nsec >= 1000000000) {
			t.tv_sec++;
			t.tv_nsec -= 1000000000;
		}
		if (sem_timedwait(&used_slots, &t) != 0) {
			if (errno == ETIMEDOUT)
				timeouts++;
			continue;
		}
		if (__atomic_load_n(&done, __ATOMIC_ACQUIRE) && ring[i].len == 0)
			break;
		pcap_inject(handle, ring[i].data, ring[i].len);
		ring[i].len = 0;
		i = (i + 1) % SLOTS;
		sent++;
		sem_post(&free_slots);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	char err[PCAP_ERRBUF_SIZE];
	if (argc != 2)
		return 2;
	handle = pcap_open_offline(argv[1], err);
	if (!handle) {
		fprintf(stderr, "semfwd: %s\n", err);
		return 1;
	}
	sem_init(&free_slots, 0, SLOTS);
	sem_init(&used_slots, 0, 0);
	pthread_t c, s;
	pthread_create(&s, NULL, sender, NULL);
	pthread_create(&c, NULL, capture, NULL);
	pthread_join(c, NULL);
	pthread_join(s, NULL);
	printf("semfwd: sent=%lu\n", sent);
	return 0;
}
"""


@pytest.fixture(scope="module")
def semfwd(tmp_path_factory):
    d = tmp_path_factory.mktemp("semfwd")
    (d / "semfwd.c").write_text(SEMFWD)
    res = subprocess.run([str(FTMB_CC), "-std=gnu11", "-O2", "-Wall", "-pthread", str(d / "semfwd.c"), "-o",
                          str(d / "semfwd"), "-lpcap"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return d / "semfwd"


def _frames(path: Path) -> list[bytes]:
    return [p.data for p in pcap.iter_pcap(path)]


@pytest.mark.parametrize("checkpoint_ms", [None, 20], ids=["standby", "checkpoint"])
def test_semaphores_are_replayed(semfwd, trace, tmp_path, checkpoint_ms):
    """sem_wait/sem_trywait/sem_timedwait/sem_post (ftmb_sem_*): the order of the waits and the
    outcome of each try and timed wait are logged; after a failover the released frames are the
    input's, in order, and the verification replay regenerates every one."""
    res = _failover(builds=None, trace=trace, tmp_path=tmp_path, name="flowmon", checkpoint_ms=checkpoint_ms,
                    argv=[str(semfwd), str(trace)])
    assert _frames(tmp_path / "out.pcap") == _frames(trace)
    assert "semfwd: sent=2000" in res.nf_stdout


# A live capture set up with pcap_create + pcap_set_* + pcap_activate, made nonblocking, waited for
# with poll() on its selectable descriptor; a worker thread sends what the capture thread queues
# (mutex + condition variable); SIGINT (the run's stop) sets the flag the capture loop polls;
# pcap_stats at the end.
POLLCAP = r"""
#include <pcap/pcap.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define SLOTS 32
static struct { unsigned len; unsigned char data[2048]; } q[SLOTS];
static unsigned head, count;
static int closed;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t more = PTHREAD_COND_INITIALIZER, room = PTHREAD_COND_INITIALIZER;
static pcap_t *handle;
static volatile sig_atomic_t stop;
static unsigned long polls, sent;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes)
{
	(void)user;
	pthread_mutex_lock(&lock);
	while (count == SLOTS)
		pthread_cond_wait(&room, &lock);
	unsigned i = (head + count) % SLOTS;
	q[i].len = h->caplen;
	memcpy(q[i].data, bytes, h->caplen);
	count++;
	pthread_cond_signal(&more);
	pthread_mutex_unlock(&lock);
}

static void *sender(void *arg)
{
	(void)arg;
	unsigned char buf[2048];
	for (;;) {
		pthread_mutex_lock(&lock);
		while (count == 0 && !closed)
			pthread_cond_wait(&more, &lock);
		if (count == 0) {
			pthread_mutex_unlock(&lock);
			return NULL;
		}
		unsigned len = q[head].len;
		memcpy(buf, q[head].data, len);
		head = (head + 1) % SLOTS;
		count--;
		pthread_cond_signal(&room);
		pthread_mutex_unlock(&lock);
		pcap_sendpacket(handle, buf, (int)len);
		sent++;
	}
}

int main(int argc, char **argv)
{
	char err[PCAP_ERRBUF_SIZE];
	handle = pcap_create(argc > 1 ? argv[1] : "eth0", err);
	if (!handle || pcap_set_snaplen(handle, 2048) != 0 || pcap_set_timeout(handle, 50) != 0 ||
	    pcap_activate(handle) != 0 || pcap_setnonblock(handle, 1, err) != 0) {
		fprintf(stderr, "pollcap: cannot open the capture\n");
		return 1;
	}
	if (pcap_datalink(handle) != DLT_EN10MB)
		return 1;
	signal(SIGINT, on_signal);
	pthread_t s;
	pthread_create(&s, NULL, sender, NULL);
	struct pollfd pfd = {.fd = pcap_get_selectable_fd(handle), .events = POLLIN};
	while (!stop) {
		if (poll(&pfd, 1, 50) > 0 && (pfd.revents & POLLIN))
			pcap_dispatch(handle, -1, on_packet, NULL);
		polls++;
	}
	pthread_mutex_lock(&lock);
	closed = 1;
	pthread_cond_broadcast(&more);
	pthread_mutex_unlock(&lock);
	pthread_join(s, NULL);
	struct pcap_stat st;
	pcap_stats(handle, &st);
	printf("pollcap: received=%u sent=%lu\n", st.ps_recv, sent);
	pcap_close(handle);
	return 0;
}
"""


@pytest.fixture(scope="module")
def pollcap(tmp_path_factory):
    d = tmp_path_factory.mktemp("pollcap")
    (d / "pollcap.c").write_text(POLLCAP)
    res = subprocess.run([str(FTMB_CC), "-std=gnu11", "-O2", "-Wall", "-pthread", str(d / "pollcap.c"), "-o",
                          str(d / "pollcap"), "-lpcap"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return d / "pollcap"


@pytest.mark.parametrize("checkpoint_ms", [None, 20], ids=["standby", "checkpoint"])
def test_pcap_create_poll_nonblocking_capture_fails_over(pollcap, trace, tmp_path, checkpoint_ms):
    """pcap_create/activate, pcap_setnonblock, poll on pcap_get_selectable_fd (its result logged),
    pcap_dispatch that returns 0 at once when nothing is there, pcap_sendpacket, pcap_stats: after a
    failover every input frame left once, in order, and the replay regenerates each."""
    res = _failover(builds=None, trace=trace, tmp_path=tmp_path, name="flowmon", checkpoint_ms=checkpoint_ms,
                    argv=[str(pollcap)])
    assert _frames(tmp_path / "out.pcap") == _frames(trace)
    assert "pollcap: received=2000 sent=2000" in res.nf_stdout
