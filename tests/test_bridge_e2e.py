"""The bridge end to end over a real pseudo-terminal: ``edgeseq emulate`` streaming a real
MIT-BIH recording (the shipped excerpt of record 208) and ``edgeseq serve`` running a bundle on it.

Fault tests: for every fault kind, at a realistic and an extreme rate, the host's counts equal
what the emulator injected (frames accepted, duplicates, sequence gaps, lost frames, lost
samples), every sample the host accepted equals the recording's, and no prediction comes from a
window or RR interval that holds a lost sample.
"""

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from edgeseq.bridge import serve as serve_mod
from edgeseq.bridge.emulator import Emulator, load_source, parse_faults
from edgeseq.errors import EdgeseqError
from edgeseq.preprocess.ecg import EcgPreprocessing
from edgeseq.preprocess.qrs import QRSDetector

COUNTED = ("frames", "duplicates", "seq_gaps", "lost_frames", "lost_samples")


def run_pair(tmp_path, source, bundle, *, faults=None, seed=7, duration=120.0, capture=False, text=False,
             serve_kw=None, emu_kw=None):
    """Emulator in a thread, bridge in this thread; returns (emulator report, serve summary, blocks, preds)."""
    link = tmp_path / f"tty{time.monotonic_ns()}"
    src = load_source(source)
    emu = Emulator(src, link, speed=None, faults=parse_faults(faults), seed=seed, duration_s=duration, text=text,
                   connect_timeout_s=20, log=lambda m: None, **(emu_kw or {}))
    report, errors = {}, []

    def target():
        try:
            report.update(emu.run())
        except Exception as e:  # surfaced by the assertion below
            errors.append(e)

    th = threading.Thread(target=target, daemon=True)
    th.start()
    while not link.is_symlink() and th.is_alive():
        time.sleep(0.01)
    kw = dict(give_up_s=0.5, quiet=True)
    kw.update(serve_kw or {})
    bridge = serve_mod.Bridge(str(link), bundle, text=text, **kw)
    blocks, preds = [], []
    if capture:
        orig_block, orig_emit = bridge._block, bridge._emit
        bridge._block = lambda b: (blocks.append(b), orig_block(b))[1]
        bridge._emit = lambda p, **kw: (preds.extend(p), orig_emit(p, **kw))[1]
    summary = bridge.run()
    th.join(timeout=60)
    assert not th.is_alive(), "emulator hung"
    assert not errors, errors
    return report, summary, blocks, preds, emu


@pytest.fixture(scope="module")
def rec208(sample):
    return f"mitdb:{sample}/208"


def test_clean_stream_equals_the_offline_pipeline(tmp_path, rec208, small_bundle):
    """No faults: the live predictions are exactly those of the offline recipe (detector + beats +
    model) run on the same physical signal, beat for beat."""
    rep, summ, blocks, preds, emu = run_pair(tmp_path, rec208, small_bundle, duration=300, capture=True)
    assert {k: summ[k] for k in COUNTED} == rep["expected"] == {
        "frames": rep["frames"], "duplicates": 0, "seq_gaps": 0, "lost_frames": 0, "lost_samples": 0}
    assert summ["crc_errors"] == summ["framing_errors"] == 0
    x = np.concatenate([b.samples[:, 0] for b in blocks])
    assert len(x) == 300 * 360

    from edgeseq.tasks.ecg import load_model

    bundle, prep, est = load_model(small_bundle)
    det = QRSDetector.from_config(bundle.manifest["detector"])
    peaks = np.concatenate([det.process(x), det.flush()]).astype(np.int64)
    w, f, idx = prep.beats(x, peaks)
    want = list(zip(peaks[idx].tolist(), [bundle.labels[k] for k in est.predict(w, f)]))
    got = [(p.sample, p.label) for p in preds]
    assert got == want
    assert summ["predictions"] == len(want) > 300
    assert rep["predictions_received"] > 0  # PREDICTION frames reached the device


FAULT_CASES = [(k, r) for k in ("bitflip", "drop", "dup", "garbage", "truncate") for r in (1e-3, 5e-2)]
FAULT_CASES += [("disconnect", 1e-3), ("disconnect", 1e-2)]
FAULT_CASES += [("all", "bitflip=1e-2,drop=1e-2,dup=1e-2,garbage=1e-2,truncate=1e-2,disconnect=2e-3")]


@pytest.mark.parametrize("kind,rate", FAULT_CASES, ids=[f"{k}-{r if k != 'all' else 'mixed'}" for k, r in FAULT_CASES])
def test_faults_are_counted_exactly(tmp_path, rec208, small_bundle, kind, rate):
    spec = rate if kind == "all" else f"{kind}={rate}"
    rep, summ, blocks, preds, emu = run_pair(tmp_path, rec208, small_bundle, faults=spec, duration=240, capture=True)
    injected = rep["faults"]
    if kind != "all":
        assert injected[kind] > 0, "the rate should inject at least once in 240 s"
    assert {k: summ[k] for k in COUNTED} == rep["expected"], (injected, summ)
    assert summ["samples"] + summ["lost_samples"] == rep["samples"]  # delivered or counted lost
    if kind in ("bitflip", "truncate", "garbage", "all"):
        assert summ["crc_errors"] + summ["framing_errors"] > 0
    # Every accepted sample is the recording's own value at its index (nothing corrupted slipped in).
    src = load_source(rec208)
    scale, offset = np.float32(src.scale[0]), np.float32(src.offset[0])
    for b in blocks:
        if len(b.samples):
            want = src.counts[b.first_index:b.first_index + len(b.samples), 0] * np.float64(scale) + np.float64(offset)
            np.testing.assert_array_equal(b.samples[:, 0], want)
    # No prediction from a window or RR interval holding a lost sample.
    lost = np.zeros(int(240 * 360) + 1, bool)
    got = set(q for q in emu._intact)
    for q, (i0, n) in emu._frame_samples.items():
        if q not in got:
            lost[i0:i0 + n] = True
    prep = EcgPreprocessing.from_config(json.loads((small_bundle / "manifest.json").read_text())["preprocessing"])
    r = np.array([p.sample for p in preds])
    if lost.any():
        assert summ["windows_dropped"] > 0
        csum = np.concatenate([[0], np.cumsum(lost)])
        lo, hi = np.maximum(r - prep.pre, 0), np.minimum(r + prep.post, len(lost))
        assert not (csum[hi] - csum[lo]).any(), "a prediction used a window with lost samples"
    assert summ["predictions"] == len(preds)
    # 240 s of record 208 hold about 400 beats: every one is classified or counted as dropped.
    assert summ["predictions"] + summ["windows_dropped"] + summ["beats_unscored"] > 350
    if kind != "all" and rate <= 1e-3:
        assert summ["predictions"] > 300


def test_an_hour_at_max_speed_keeps_memory_bounded(tmp_path, sample, small_bundle):
    """One hour of ECG (the 10-min excerpt looped) with faults through ``edgeseq serve`` in its own
    process: its resident memory after the first minutes stays flat to the end."""
    link = tmp_path / "ttyHour"
    emu = Emulator(load_source(f"mitdb:{sample}/208"), link, speed=None,
                   faults=parse_faults("bitflip=1e-3,drop=1e-3,dup=1e-4,garbage=1e-4,truncate=1e-4"), seed=3,
                   duration_s=3600, loop=True, connect_timeout_s=30, log=lambda m: None)
    report = {}
    th = threading.Thread(target=lambda: report.update(emu.run()), daemon=True)
    th.start()
    while not link.is_symlink():
        time.sleep(0.01)
    proc = subprocess.Popen([sys.executable, "-m", "edgeseq", "serve", "--port", str(link), "--bundle",
                             str(small_bundle), "--quiet", "--give-up", "0.5"], stdout=subprocess.PIPE, text=True)
    rss = []
    while proc.poll() is None:
        try:
            status = open(f"/proc/{proc.pid}/status").read()
            rss.append(int(status.split("VmRSS:")[1].split()[0]))
        except (OSError, IndexError):
            pass
        time.sleep(0.1)
    out = proc.stdout.read()
    th.join(timeout=30)
    summ = json.loads(out.strip().splitlines()[-1])
    assert report["samples"] == 3600 * 360
    assert {k: summ[k] for k in COUNTED} == report["expected"]
    assert summ["predictions"] > 3000
    assert len(rss) > 10
    warm = max(rss[: len(rss) // 4])
    assert max(rss) - warm < 20_000, f"RSS grew from {warm} kB to {max(rss)} kB over the hour"


def test_text_lines_stream(tmp_path, rec208, small_bundle):
    src = load_source(rec208)
    rep, summ, blocks, preds, _ = run_pair(
        tmp_path, rec208, small_bundle, text=True, duration=120, capture=True,
        serve_kw=dict(rate=360.0, scale=src.scale[0], offset=src.offset[0]))
    assert rep["mode"] == "text" and summ["lines"] == rep["samples"] == 120 * 360
    assert summ["bad_lines"] == 0 and summ["lost_samples"] == 0
    assert summ["predictions"] > 100


def test_text_lines_with_damage_count_lost_samples(tmp_path, rec208, small_bundle):
    rep, summ, *_ = run_pair(tmp_path, rec208, small_bundle, text=True, duration=60, faults="garbage=2e-3",
                             serve_kw=dict(rate=360.0))
    # Junk mixed into a line makes it unparsable: one sample lost per bad line. (Text lines carry
    # no CRC: junk that happens to be digits, or a cut line that runs into the next one, passes as
    # a wrong number. That is what the binary protocol is for; see PROTOCOL.md section 5.)
    assert 0 < summ["bad_lines"] <= rep["faults"]["garbage"] * 2
    assert summ["lost_samples"] == summ["bad_lines"]
    assert summ["predictions"] > 30


def test_record_then_replay_gives_the_same_predictions(tmp_path, rec208, small_bundle):
    raw, out1, out2 = tmp_path / "s.raw", tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    rep, summ, *_ = run_pair(tmp_path, rec208, small_bundle, faults="bitflip=1e-2,drop=1e-2", duration=120,
                             serve_kw=dict(record=str(raw), out=str(out1)))
    assert raw.stat().st_size == summ["bytes"]
    again = serve_mod.serve(str(raw), small_bundle, out=str(out2), quiet=True)
    strip = lambda p: [(r["sample"], r["label"]) for r in map(json.loads, p.read_text().splitlines())]  # noqa: E731
    assert strip(out1) == strip(out2) and len(strip(out1)) == summ["predictions"]
    assert {k: again[k] for k in COUNTED} == {k: summ[k] for k in COUNTED}


def test_wrong_rate_or_channels_is_refused(tmp_path, small_bundle):
    hb = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "hbedb", "BDS", "data", "BDS00001.txt")
    if not os.path.exists(hb):
        pytest.skip("hbedb not present")
    with pytest.raises(EdgeseqError, match="streams at 100 Hz, but bundle .* was trained at 360 Hz"):
        run_pair(tmp_path, f"hbedb:{hb}", small_bundle, duration=5)


def test_cli_errors_are_one_line(tmp_path, small_bundle, sample):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "edgeseq", *args], capture_output=True, text=True, timeout=60)

    cases = [
        (["emulate", "--source", "wav:x", "--link", str(tmp_path / "t")], "expected mitdb:DIR/RECORD or hbedb:FILE"),
        (["emulate", "--source", f"mitdb:{sample}/208", "--link", str(tmp_path / "t"), "--faults", "flip=1"],
         "not KIND=RATE"),
        (["emulate", "--source", f"mitdb:{sample}/208", "--link", str(tmp_path / "t"), "--faults", "drop=2"],
         "within \\[0, 1\\]"),
        (["emulate", "--source", f"mitdb:{sample}/999", "--link", str(tmp_path / "t")], "header .* not found"),
        (["emulate", "--source", f"mitdb:{sample}/208", "--link", str(tmp_path / "t"), "--speed", "fast"],
         "--speed: must be"),
        (["serve", "--port", str(tmp_path / "none"), "--bundle", str(tmp_path / "nob")], "bundle .* not found"),
        (["serve", "--port", str(tmp_path / "none"), "--bundle", str(small_bundle), "--text"], "--text needs --rate"),
        # A replayed recording appended to itself would be read back forever.
        (["serve", "--port", str(tmp_path / "rec.raw"), "--bundle", str(small_bundle), "--record",
          str(tmp_path / "rec.raw")], "same file as --port"),
        (["serve", "--port", str(tmp_path / "rec.raw"), "--bundle", str(small_bundle), "--out",
          str(tmp_path / "p.jsonl"), "--record", str(tmp_path / "p.jsonl")], "same file as --out"),
    ]
    for args, msg in cases:
        r = cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("edgeseq: error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
        import re

        assert re.search(msg, r.stderr), (msg, r.stderr)


def test_device_restart_starts_a_new_stream(tmp_path, rec208, small_bundle):
    """A device that reboots starts its sample index (and seq) again from 0: the bridge closes the
    old stream and begins a new one, with no loss counted and predictions from both."""
    from edgeseq.bridge import protocol as P

    src = load_source(rec208)
    x = src.counts[: 60 * 360]

    def boot(seq0):
        out = bytearray(P.encode_frame(P.Frame(P.INFO, seq0, 0, 1, 1, P.info_payload(
            "dev", 360.0, src.scale, src.offset, "mV"))))
        for k, i in enumerate(range(0, len(x), 10)):
            out += P.encode_frame(P.Frame(P.SAMPLES, seq0 + 1 + k, 0, 1, 1, P.samples_payload(i, x[i:i + 10], 1)))
        return bytes(out)

    raw = tmp_path / "reboot.raw"
    raw.write_bytes(boot(0) + boot(0))
    s = serve_mod.serve(str(raw), small_bundle, quiet=True)
    (tmp_path / "one.raw").write_bytes(boot(0))
    one = serve_mod.serve(str(tmp_path / "one.raw"), small_bundle, quiet=True)
    assert s["restarts"] == 1 and s["lost_samples"] == s["seq_gaps"] == s["lost_frames"] == 0
    assert s["predictions"] == 2 * one["predictions"] > 50
    assert s["beats_detected"] == 2 * one["beats_detected"]


# ---- issue 16: a port that is not there, replay speed, balance trials ---------------------------

def _serve_errors(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("serve: ")]


def test_a_missing_port_is_named_then_waited_for_until_it_appears(tmp_path, rec208, small_bundle, capsys):
    """A service started before its board: one line names the port and the ports that exist,
    and serve connects when the device appears (here: the emulator, half a second later)."""
    from edgeseq.bridge.link import available_ports

    link = tmp_path / "ttyLater"
    bridge = serve_mod.Bridge(str(link), small_bundle, give_up_s=1.0, quiet=True)
    got, errors = {}, []

    def serve_it():
        try:
            got.update(bridge.run())
        except Exception as e:  # surfaced by the assertion below
            errors.append(e)

    th = threading.Thread(target=serve_it, daemon=True)
    th.start()
    time.sleep(0.5)
    emu = Emulator(load_source(rec208), link, speed=None, duration_s=20, connect_timeout_s=20, log=lambda m: None)
    rep = emu.run()
    th.join(timeout=30)
    assert not th.is_alive() and not errors, errors
    assert got["connects"] == 1 and got["samples"] == rep["samples"] == 20 * 360 and got["predictions"] > 10
    lines = _serve_errors(capsys)
    before = lines[:lines.index(f"serve: connected to {link}")]  # (the end of the stream is an outage too)
    missing = [ln for ln in before if "does not exist" in ln]
    ports = ", ".join(available_ports()) or "none found"
    assert len(missing) == 1, lines  # said once, not once per retry (the next one is 30 s away)
    assert missing[0].startswith(f"serve: {link} does not exist (serial ports here: {ports}); waiting for it")


def test_a_mistyped_port_repeats_its_line_and_give_up_exits_2(tmp_path, small_bundle, capsys, monkeypatch):
    port = str(tmp_path / "ttyACM9")
    monkeypatch.setattr(serve_mod.Bridge, "WAITING_REPEAT_S", 0.3)
    t0 = time.monotonic()
    with pytest.raises(serve_mod.StreamFailed, match=r"never connected to .*ttyACM9: .*ttyACM9 does not exist "
                                                     r"\(serial ports here: ") as e:
        serve_mod.Bridge(port, small_bundle, give_up_s=1.0, quiet=True).run()
    took = time.monotonic() - t0
    assert e.value.summary["connects"] == 0 and e.value.summary["samples"] == 0
    lines = _serve_errors(capsys)
    # The back-off reaches the give-up after 1.0-1.6 s: a line at once, then one every 0.3 s.
    assert 3 <= len(lines) <= took / 0.3 + 1, (took, lines)
    assert all(ln.startswith(f"serve: {port} does not exist") for ln in lines), lines
    # The CLI: the summary on stdout, exit 2, the waiting line once and the error line on stderr.
    r = subprocess.run([sys.executable, "-m", "edgeseq", "serve", "--port", port, "--bundle", str(small_bundle),
                        "--give-up", "0.5", "--quiet"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 2 and "does not exist" in err[0] and err[1].startswith("edgeseq: error: never connected")
    assert json.loads(r.stdout)["connects"] == 0


def _at_speed(tmp_path, source, bundle, speed, duration, **serve_kw):
    link = tmp_path / f"tty{time.monotonic_ns()}"
    emu = Emulator(load_source(source), link, speed=speed, duration_s=duration, connect_timeout_s=20,
                   log=lambda m: None)
    th = threading.Thread(target=emu.run, daemon=True)
    th.start()
    while not link.is_symlink() and th.is_alive():
        time.sleep(0.01)
    s = serve_mod.Bridge(str(link), bundle, **{"give_up_s": 0.5, "quiet": True, **serve_kw}).run()
    th.join(timeout=30)
    return s


def test_faster_than_real_time_says_latency_is_backlog(tmp_path, rec208, small_bundle):
    raw = tmp_path / "rec.raw"
    fast = _at_speed(tmp_path, rec208, small_bundle, None, 120, record=str(raw))  # emulate --speed max
    assert fast["realtime_factor"] > 5, fast["realtime_factor"]
    import re

    assert re.match(r"samples arrived \d+x faster than real time: latency includes queueing backlog",
                    fast["latency_note"]), fast["latency_note"]
    replay = serve_mod.serve(str(raw), small_bundle, quiet=True)
    assert replay["realtime_factor"] > 5 and "queueing backlog" in replay["latency_note"]
    assert replay["samples"] == fast["samples"] == 120 * 360
    live = _at_speed(tmp_path, rec208, small_bundle, 1.0, 3)
    assert 0.8 < live["realtime_factor"] < 1.25, live["realtime_factor"]
    assert "latency_note" not in live


def test_balance_serve_names_the_target_and_averages_the_trial(hbedb, score_bundle, tmp_path, capsys):
    """A stream is one trial: each window's score comes with the trial's mean so far, and the
    summary's trial score is what cv balance predicts for the trial (the mean of its windows)."""
    import io

    from edgeseq.tasks import balance

    trial = hbedb / "BDS" / "data" / "BDS00007.txt"
    out, shown = tmp_path / "bal.jsonl", io.StringIO()
    s = _at_speed(tmp_path, f"hbedb:{trial}", score_bundle, None, None, out=str(out), quiet=False, stream=shown)
    _, prep, est = balance.load_model(score_bundle)
    X, _, _ = prep.windows(load_source(f"hbedb:{trial}").counts * 0.01)
    want = est.predict(X)
    assert s["target"] == "Best_T" and s["target_description"] == "Best_T (Mini-BESTest total, 0-28)"
    assert s["trial"]["windows"] == len(want) == s["predictions"] == 11
    np.testing.assert_allclose(s["trial"]["score"], want.mean(), atol=1e-4)
    recs = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [r["target"] for r in recs] == ["Best_T"] * 11
    np.testing.assert_allclose([r["trial"]["score"] for r in recs], np.cumsum(want) / np.arange(1, 12), atol=1e-4)
    assert [r["trial"]["windows"] for r in recs] == list(range(1, 12))
    lines = shown.getvalue().splitlines()
    assert len(lines) == 11 and all(" Best_T " in ln and " trial " in ln for ln in lines), lines
    assert lines[-1].endswith(f"trial {s['trial']['score']:.4g} (11 windows)")
    assert "serve: Best_T (Mini-BESTest total, 0-28): a score per 10-s window every 5 s" in capsys.readouterr().err


def test_balance_classifier_trial_is_the_label_of_the_mean(hbedb, tcn_condition_bundle):
    """For a classifier the trial's label comes from the mean of the windows' outputs, as in cv."""
    from edgeseq.bridge.pipelines import open_pipeline
    from edgeseq.bridge.tracker import Block
    from edgeseq.data.hbedb import list_trials, load_trial
    from edgeseq.finite import decide
    from edgeseq.tasks import balance

    _, prep, est = balance.load_model(tcn_condition_bundle)
    trial = load_trial(hbedb, list_trials(hbedb)[0])
    pipe = open_pipeline(tcn_condition_bundle)
    preds = pipe.feed(Block(first_index=0, samples=trial.forces, lost_before=0, device_time_us=0, arrival=0.0))
    X, _, _ = prep.windows(trial.forces)
    k, p = decide(est.decision_function(X).mean(axis=0, keepdims=True))
    last = preds[-1].trial
    assert last == pipe.summary()["trial"] and last["windows"] == len(X) == len(preds)
    assert last["label"] == ["Firm", "Foam"][k[0]] and abs(last["score"] - p[0, k[0]]) < 1e-4
    assert pipe.summary()["target_description"] == "surface (firm or foam surface, Firm / Foam)"
