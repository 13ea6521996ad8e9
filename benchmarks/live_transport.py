"""The Live tab's transport alone: Gradio 6 webcam streaming against FastRTC's WebRTC, echo handlers.

Both servers run an echo handler (no model): it returns the frame it got, with its own frame
counter and the time it handled the frame stamped in pixels. The browser is Debian's Chromium,
headless, whose fake camera plays a 640 x 480 .y4m clip with the clip's frame index stamped in
pixels. In the page, every camera frame is timed as it enters the page (a MediaStreamTrackProcessor
between the camera and the app reads its index), and every frame shown back is timed as it is
shown (the output <img>'s load event for Gradio, requestVideoFrameCallback on the output <video>
for WebRTC) and decoded from a canvas. So:

- round-trip latency = shown - entered the page, matched by the clip's frame index (the clip loops
  every `--clip-seconds`, much longer than any latency);
- return leg = shown (wall clock) - the server's stamp (same machine, same clock);
- delivered fps = frames shown with a new server counter per second.

Each stamp is 16 cells holding a 16-bit number and 16 cells its complement (a corrupted read is
rejected), white or black, 20 x 20 pixels at 640 x 480: rows 0 (clip index), 1 (server counter) and
2 (server time, milliseconds mod 65536). Both transports compress (Gradio sends JPEG/WebP pictures,
WebRTC VP8), which the cells survive.

Gradio 6 runs in this venv; FastRTC 0.0.34 pins `gradio<6`, so its server runs in a second venv
(`--rtc-python`, made by `--setup-rtc-venv`: `python3 -m venv /tmp/venv-rtc` and
`pip install fastrtc==0.0.34`; no torch). Each server is a subprocess of this script (this file,
`--serve KIND`); the variants run in interleaved rounds, a fresh page each time, the first
`--settle` seconds of each page after the first frame came back left out. WebRTC connects on this
machine with host candidates only (no STUN server on either side: `iceServers: []`; aiortc would
otherwise ask Google's). FastRTC's handler gets the newest frame (`skip_frames=True`), as Gradio's
does; the browser's WebRTC sender is measured with both degradation preferences (640 x 480 kept, or
Chromium's default, which lowers the resolution when the CPU is busy).

`--work-ms N` makes each handler call sleep N ms first, a stand-in for the model: what the two
transports do when the handler, not the transport, is the bottleneck.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CELLS = 32  # per stamp row: 16 bits of the number, then 16 bits of its complement
ROWS = 24  # the frame's height in stamp rows (only the first three are used)
CLIP_ROW, COUNT_ROW, TIME_ROW = 0, 1, 2
SIZE = (640, 480)
RTC_VERSION = "0.0.34"


# ------------------------------------------------------------------------------------------ stamps


def stamp(frame, row: int, value: int) -> None:
    """Write `value` (mod 65536) into stamp row `row` of an H x W (x C) uint8 frame, in place."""
    height, width = frame.shape[:2]
    value &= 0xFFFF
    bits = [(value >> i) & 1 for i in range(16)] + [((~value) >> i) & 1 for i in range(16)]
    top, bottom = row * height // ROWS, (row + 1) * height // ROWS
    for i, bit in enumerate(bits):
        frame[top:bottom, i * width // CELLS : (i + 1) * width // CELLS] = 255 if bit else 0


def read_stamp(frame, row: int) -> int | None:
    """The number in stamp row `row` of a frame, or None when its complement does not match."""
    height, width = frame.shape[:2]
    y = int((row + 0.5) * height / ROWS)
    level = frame[y].reshape(width, -1).mean(axis=1)
    bits = [level[int((i + 0.5) * width / CELLS)] > 127 for i in range(CELLS)]
    value = sum(int(b) << i for i, b in enumerate(bits[:16]))
    complement = sum(int(b) << i for i, b in enumerate(bits[16:]))
    return value if value ^ complement == 0xFFFF else None


def echo_handler(work_s: float = 0.0):
    """The frame back, with a counter and the time (ms, mod 65536) stamped: the handler both servers run.

    work_s (float, 0): seconds the handler sleeps first, standing in for a model's work on the frame
        (the stamp comes after it, so the return leg stays the transport's).
    """
    count = 0

    def echo(frame):
        nonlocal count
        if frame is None:
            return None
        if work_s:
            time.sleep(work_s)
        count += 1
        frame = frame.copy()
        stamp(frame, COUNT_ROW, count)
        stamp(frame, TIME_ROW, int(time.time() * 1000))
        return frame

    return echo


# ------------------------------------------------------------------------------------------ servers


def serve_gradio(port: int, work_s: float, stream_every: float) -> None:
    """Gradio 6 webcam streaming set up as the app's Live tab sets it (one handler at a time)."""
    import gradio as gr

    with gr.Blocks() as demo:
        camera = gr.Image(
            sources=["webcam"],
            streaming=True,
            type="numpy",
            elem_id="camera",
            webcam_options=gr.WebcamOptions(mirror=False),  # the stamps must not be flipped
        )
        view = gr.Image(interactive=False, elem_id="view")
        camera.stream(
            echo_handler(work_s),
            camera,
            view,
            stream_every=stream_every,
            show_progress="hidden",
            concurrency_limit=1,
            time_limit=600,
        )
    demo.launch(server_name="127.0.0.1", server_port=port, quiet=True)


def serve_fastrtc(port: int, work_s: float, degradation: str) -> None:
    """FastRTC's WebRTC component (send-receive video) with no ICE servers on either side.

    skip_frames=True: each call gets the newest frame received, as Gradio streaming and the Live tab
    do (without it FastRTC hands the handler every frame in order, so a slow handler falls behind).
    degradation: the browser sender's degradationPreference: "balanced" (Chromium's default: under
    CPU load it lowers the resolution, to 480 x 360 on this busy machine) or "maintain-resolution"
    (640 x 480 kept, the frame rate gives way: the same pictures as Gradio's).
    """
    import gradio as gr
    from fastrtc import VideoStreamHandler, WebRTC

    no_stun = {"iceServers": []}  # host candidates only: there is no network beyond this machine
    with gr.Blocks() as demo:
        rtc = WebRTC(
            mode="send-receive",
            modality="video",
            elem_id="rtc",
            mirror_webcam=False,
            full_screen=False,
            # FastRTC asks for 1280 x 720 (ideal); from a 640 x 480 camera Chromium then sends a
            # cropped 500 x 480 picture. Gradio takes the camera as it is: the same size for both.
            track_constraints={"width": {"ideal": SIZE[0]}, "height": {"ideal": SIZE[1]}},
            rtp_params={"degradationPreference": degradation},
            rtc_configuration=no_stun,
            server_rtc_configuration=no_stun,
        )
        rtc.stream(
            fn=VideoStreamHandler(echo_handler(work_s), skip_frames=True),
            inputs=[rtc],
            outputs=[rtc],
            time_limit=600,
            concurrency_limit=4,
        )
    demo.launch(server_name="127.0.0.1", server_port=port, quiet=True)


def serve(argv: list[str]) -> None:
    """`--serve gradio PORT WORK_S STREAM_EVERY` or `--serve fastrtc PORT WORK_S DEGRADATION`: one
    server, until it is terminated."""
    kind, port, work_s = argv[0], int(argv[1]), float(argv[2])
    if kind == "gradio":
        serve_gradio(port, work_s, float(argv[3]))
    elif kind == "fastrtc":
        serve_fastrtc(port, work_s, argv[3])
    else:
        raise SystemExit(f"unknown server kind {kind!r}: gradio or fastrtc")


# ------------------------------------------------------------------------------------------ browser

# Runs in the page before its own scripts. Camera frames: getUserMedia's track is passed through a
# MediaStreamTrackProcessor -> MediaStreamTrackGenerator pair whose transform reads the clip index
# of each frame as it enters the page (the app gets the generator's track, frames unchanged).
# Frames shown back: the load event of the Gradio output <img> (#view), requestVideoFrameCallback
# of the FastRTC <video> (#rtc), which shows the returned track once connected.
PROBE_JS = """
(() => {
  const CELLS = __CELLS__, ROWS = __ROWS__;
  const probe = window.__probe = {sent: [], shown: [], errors: [], capture: 'none'};
  const canvas = new OffscreenCanvas(1, 1);
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  function decode(source, width, height) {
    const band = Math.ceil(3 * height / ROWS);
    if (canvas.width !== width || canvas.height !== band) { canvas.width = width; canvas.height = band; }
    ctx.drawImage(source, 0, 0, width, height);
    const px = ctx.getImageData(0, 0, width, band).data;
    const out = [];
    for (let row = 0; row < 3; row++) {
      const y = Math.floor((row + 0.5) * height / ROWS);
      let value = 0, complement = 0;
      for (let i = 0; i < CELLS; i++) {
        const k = (y * width + Math.floor((i + 0.5) * width / CELLS)) * 4;
        const bit = (px[k] + px[k + 1] + px[k + 2]) / 3 > 127 ? 1 : 0;
        if (i < 16) value |= bit << i; else complement |= bit << (i - 16);
      }
      out.push(((value ^ complement) & 0xFFFF) === 0xFFFF ? value : null);
    }
    return out;
  }
  const media = navigator.mediaDevices;
  const getUserMedia = media.getUserMedia.bind(media);
  media.getUserMedia = async (constraints) => {
    const stream = await getUserMedia(constraints);
    const [track] = stream.getVideoTracks();
    if (!track || typeof MediaStreamTrackProcessor !== 'function') return stream;
    probe.capture = 'MediaStreamTrackProcessor';
    const generator = new MediaStreamTrackGenerator({kind: 'video'});
    new MediaStreamTrackProcessor({track}).readable.pipeThrough(new TransformStream({
      transform(frame, controller) {
        try {
          const [clip] = decode(frame, frame.displayWidth, frame.displayHeight);
          if (clip !== null) probe.sent.push([clip, performance.now()]);
        } catch (error) { probe.errors.push(String(error)); }
        controller.enqueue(frame);
      }
    })).pipeTo(generator.writable);
    return new MediaStream([generator, ...stream.getAudioTracks()]);
  };
  function shown(source, width, height) {
    const t = performance.now(), wall = Date.now();
    try {
      const [clip, count, ms] = decode(source, width, height);
      if (count !== null) probe.shown.push([clip, count, ms, t, wall, width, height]);
    } catch (error) { probe.errors.push(String(error)); }
  }
  document.addEventListener('load', (event) => {
    const img = event.target;
    if (img.tagName === 'IMG' && img.closest('#view')) shown(img, img.naturalWidth, img.naturalHeight);
  }, true);
  const watched = new WeakSet();
  setInterval(() => {
    for (const video of document.querySelectorAll('#rtc video')) {
      if (watched.has(video)) continue;
      watched.add(video);
      const onFrame = () => {
        if (video.videoWidth) shown(video, video.videoWidth, video.videoHeight);
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    }
  }, 100);
})();
""".replace("__CELLS__", str(CELLS)).replace("__ROWS__", str(ROWS))


def write_clip(path: Path, seconds: float, fps: int = 30) -> Path:
    """A .y4m clip (640 x 480, 4:2:0) for Chromium's fake camera: the astronaut drifting, each frame's
    index stamped in row 0. It loops, so `seconds` must exceed any latency measured."""
    import cv2
    import numpy as np
    from skimage import data

    width, height = SIZE
    picture = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(round(seconds * fps)):
            frame = np.roll(picture, 4 * i, axis=1)
            stamp(frame, CLIP_ROW, i)
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def launch_browser(playwright, clip: Path):
    return playwright.chromium.launch(
        executable_path="/usr/bin/chromium",
        headless=True,
        args=[
            "--no-sandbox",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}",
        ],
    )


def start_stream(page, url: str, root: str) -> None:
    """Open the page, allow the camera, press Record, wait for the first frame back."""
    page.goto(url)
    access = page.locator(root).get_by_text("Click to Access Webcam")
    record = page.locator(f"{root} button", has_text="Record")
    access.or_(record).first.wait_for(timeout=60_000)
    if access.count():
        access.first.click()
    record.first.click(timeout=60_000)
    page.wait_for_function("window.__probe.shown.length > 0", timeout=90_000)


# ------------------------------------------------------------------------------------------ CPU time


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (those that ended count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def resident_mib(pid: int) -> float:
    """The resident set of a process (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def descendants(root: int) -> list[int]:
    """Every process below `root` (the browser's processes are children of Playwright's driver)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


# ------------------------------------------------------------------------------------------ measuring


def measure(browser, server: dict, seconds: float, settle: float) -> dict:
    """One page on one server: stream, let it settle, record `seconds`, return the raw records."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.add_init_script(PROBE_JS)
    try:
        started = time.monotonic()
        start_stream(page, server["url"], server["root"])
        connect_s = time.monotonic() - started
        time.sleep(settle)
        pids = [server["process"].pid]
        browser_pids = descendants(os.getpid())
        cpu_before = cpu_seconds(pids), cpu_seconds(browser_pids)
        begin = page.evaluate("performance.now()")
        time.sleep(seconds)
        end = page.evaluate("performance.now()")
        cpu_after = cpu_seconds(pids), cpu_seconds(browser_pids)
        server_rss = resident_mib(server["process"].pid)
        probe = page.evaluate("window.__probe")
    finally:
        page.close()
    return {
        "connect_s": connect_s,
        "window_ms": (begin, end),
        "server_cpu_s": cpu_after[0] - cpu_before[0],
        "browser_cpu_s": cpu_after[1] - cpu_before[1],
        "server_rss_mib": server_rss,
        **probe,
    }


def summarize(segments: list[dict]) -> dict:
    """Latency (median, p95), delivered fps and CPU per frame over the recorded windows."""
    import numpy as np

    latency, return_leg, per_second, sizes = [], [], [], set()
    shown_total = sent_total = handled_total = 0
    window_total = server_cpu = browser_cpu = 0.0
    for segment in segments:
        begin, end = segment["window_ms"]
        window_total += (end - begin) / 1000
        sent = sorted((t, clip) for clip, t in segment["sent"])
        sent_total += sum(begin <= t < end for t, _ in sent)
        first_shown, counts = [], set()
        for clip, count, ms, t, wall, width, height in segment["shown"]:
            if count in counts:
                continue  # the same returned frame shown again (a video presents frames repeatedly)
            counts.add(count)
            if begin <= t < end:
                first_shown.append(t)
                sizes.add(f"{width}x{height}")
                return_leg.append((wall - ms) % 65536)
                entered = [s for s, c in sent if c == clip and s <= t]
                if clip is not None and entered:
                    latency.append(t - entered[-1])
        shown_total += len(first_shown)
        in_window = [r[1] for r in segment["shown"] if begin <= r[3] < end]
        if in_window:
            handled_total += (max(in_window) - min(in_window) + 1) & 0xFFFF
        bins = np.histogram(first_shown, bins=max(1, int((end - begin) // 1000)), range=(begin, end))[0]
        per_second.extend(bins.tolist())
        server_cpu += segment["server_cpu_s"]
        browser_cpu += segment["browser_cpu_s"]

    def spread(values: list[float]) -> dict:
        if not values:
            return {"frames": 0}
        return {
            "frames": len(values),
            "median": float(np.median(values)),
            "p95": float(np.percentile(values, 95)),
            "min": float(min(values)),
            "max": float(max(values)),
        }

    return {
        "seconds_recorded": window_total,
        "delivered_fps": shown_total / window_total,
        "delivered_fps_per_second": {
            "median": float(np.median(per_second)),
            "p5": float(np.percentile(per_second, 5)),
        },
        "camera_fps": sent_total / window_total,
        "server_frames_per_s": handled_total / window_total,
        "round_trip_latency_ms": spread(latency),
        "return_leg_ms": spread(return_leg),
        "server_cpu_ms_per_frame": 1000 * server_cpu / max(shown_total, 1),
        "browser_cpu_ms_per_frame": 1000 * browser_cpu / max(shown_total, 1),
        "server_cpu_fraction": server_cpu / window_total,
        "browser_cpu_fraction": browser_cpu / window_total,
        "frame_sizes_shown": sorted(sizes),
        "connect_s": [round(s["connect_s"], 2) for s in segments],
        "server_rss_mib_at_end": [round(s["server_rss_mib"]) for s in segments],
        "page_errors": sorted({e for s in segments for e in s["errors"]})[:5],
        "capture_timed_by": sorted({s["capture"] for s in segments}),
    }


# ------------------------------------------------------------------------------------------ servers


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(python: str, kind: str, work_s: float, *extra: str, log: Path) -> dict:
    """This file as a server (`--serve KIND`) under `python`; waits until it answers HTTP."""
    port = free_port()
    env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    with log.open("w") as out:
        process = subprocess.Popen(
            [python, __file__, "--serve", kind, str(port), str(work_s), *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {kind} server exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return {"process": process, "url": url, "root": "#rtc" if kind == "fastrtc" else "#camera"}
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the {kind} server did not answer at {url} within 120 s")


def versions(python: str, packages: list[str]) -> dict:
    """Installed versions of `packages` in the environment of `python`."""
    code = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
    )
    done = subprocess.run([python, "-c", code, *packages], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def setup_rtc_venv(path: Path) -> str:
    """Make the FastRTC venv (`python3 -m venv`, pip from PyPI: fastrtc and its gradio<6; no torch)."""
    subprocess.run(["python3", "-m", "venv", str(path)], check=True)
    python = str(path / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", f"fastrtc=={RTC_VERSION}"], check=True)
    return python


# ------------------------------------------------------------------------------------------ main


def add_options(parser) -> None:
    parser.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="recorded seconds per transport, over all rounds (default 20)",
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="interleaved rounds, a fresh page each (default 4)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds left out after the first frame came back (default 3)",
    )
    parser.add_argument(
        "--stream-every",
        type=float,
        nargs="+",
        default=[0.1, 1 / 30],
        help="Gradio stream_every values to measure (default 0.1, the app's, and 1/30, every camera frame)",
    )
    parser.add_argument(
        "--work-ms",
        type=float,
        default=0.0,
        help="milliseconds each handler call sleeps, standing in for a model (default 0: the transport alone)",
    )
    parser.add_argument("--rtc-python", default="/tmp/venv-rtc/bin/python", help="python of the FastRTC venv")
    parser.add_argument(
        "--setup-rtc-venv", action="store_true", help="make the FastRTC venv at --rtc-python's place first"
    )
    parser.add_argument(
        "--rtc-degradation",
        nargs="+",
        choices=["maintain-resolution", "balanced"],
        default=["maintain-resolution", "balanced"],
        help="WebRTC sender degradationPreference values to measure (default both: 640 x 480 kept, "
        "Chromium's default that lowers the resolution under load)",
    )
    parser.add_argument("--no-rtc", action="store_true", help="Gradio streaming only (no FastRTC venv)")
    parser.add_argument(
        "--clip-seconds",
        type=float,
        default=8.0,
        help="loop of the fake camera's clip, above any latency (default 8)",
    )


def main() -> None:
    import tempfile

    import torch
    from common import machine_info, parse_args, save

    args = parse_args(__doc__.splitlines()[0], add_options)
    rounds, seconds = (1, 4.0) if args.quick else (args.rounds, args.seconds)
    stream_every = args.stream_every[:1] if args.quick else args.stream_every
    if args.quick:
        args.rtc_degradation = args.rtc_degradation[:1]
    machine = machine_info(torch.device("cpu"))  # the load average before the runs
    work_s = args.work_ms / 1000
    rtc_python = args.rtc_python
    if args.setup_rtc_venv and not args.no_rtc:
        rtc_python = setup_rtc_venv(Path(rtc_python).parents[1])
    if not args.no_rtc and not Path(rtc_python).is_file():
        raise SystemExit(
            f"no FastRTC venv at {rtc_python}: pass --setup-rtc-venv, --rtc-python PATH or --no-rtc"
        )
    found = {"ours": versions(sys.executable, ["gradio", "playwright"])}
    if not args.no_rtc:
        found["fastrtc_venv"] = versions(rtc_python, ["fastrtc", "gradio", "aiortc", "av"])
    chromium = subprocess.run(
        ["/usr/bin/chromium", "--version"], capture_output=True, text=True
    ).stdout.strip()

    with tempfile.TemporaryDirectory(prefix="live-transport-") as folder:
        folder = Path(folder)
        clip = write_clip(folder / "camera.y4m", args.clip_seconds)
        servers = {}
        try:
            for every in stream_every:
                servers[f"gradio stream_every={every:.3g}s"] = start_server(
                    sys.executable, "gradio", work_s, str(every), log=folder / f"gradio-{every}.log"
                )
            for degradation in [] if args.no_rtc else args.rtc_degradation:
                servers[f"fastrtc webrtc {degradation}"] = start_server(
                    rtc_python, "fastrtc", work_s, degradation, log=folder / f"fastrtc-{degradation}.log"
                )
            segments = run_rounds(servers, clip, rounds, seconds / rounds, args.settle)
        finally:
            for server in servers.values():
                server["process"].terminate()
                server["process"].wait(timeout=30)
    results = {
        name: summarize(runs) | {"rounds": [round_summary(run) for run in runs]}
        for name, runs in segments.items()
    }
    print_results(results)
    save(
        f"live_transport-work{args.work_ms:g}ms" if args.work_ms else "live_transport",
        {
            "benchmark": "the Live tab's transport alone (echo handler): Gradio 6 webcam streaming against "
            "FastRTC WebRTC, delivered fps and round-trip latency in headless Chromium",
            "machine": machine,
            "versions": found | {"chromium": chromium},
            "settings": {
                "size": list(SIZE),
                "handler_work_ms": args.work_ms,
                "camera": "Chromium fake camera, .y4m clip at 30 fps",
                "recorded_s_per_transport": seconds,
                "rounds": rounds,
                "settle_s": args.settle,
                "ice": "iceServers [] on both sides: host candidates only, no STUN",
                "latency": "frame entered the page (MediaStreamTrackProcessor) -> shown back (img load / "
                "requestVideoFrameCallback), matched by the clip's stamped frame index",
                "return_leg": "server stamp (wall clock) -> shown, same machine",
            },
            "results": results,
        },
        args,
    )


def run_rounds(servers: dict, clip: Path, rounds: int, seconds: float, settle: float) -> dict[str, list]:
    """Every server `rounds` times in interleaved rounds, `seconds` recorded each; their raw records."""
    from playwright.sync_api import sync_playwright

    segments = {name: [] for name in servers}
    with sync_playwright() as playwright:
        browser = launch_browser(playwright, clip)
        try:
            for round_ in range(rounds):
                for name, server in servers.items():
                    segments[name].append(measure(browser, server, seconds, settle))
                    done = round_summary(segments[name][-1])
                    print(
                        f"round {round_ + 1} {name:38} {done['delivered_fps']:5.1f} fps, round trip "
                        f"median {done['latency_median_ms'] or float('nan'):6.0f} ms"
                    )
        finally:
            browser.close()
    return segments


def round_summary(segment: dict) -> dict:
    """One round alone (to judge how much the load moved the rounds): fps and median latency."""
    alone = summarize([segment])
    return {
        "delivered_fps": round(alone["delivered_fps"], 2),
        "latency_median_ms": alone["round_trip_latency_ms"].get("median"),
    }


def print_results(results: dict) -> None:
    for name, r in results.items():
        latency, back = r["round_trip_latency_ms"], r["return_leg_ms"]
        print(
            f"{name:38} {r['delivered_fps']:5.1f} fps delivered (camera {r['camera_fps']:.1f}), round trip "
            f"median {latency.get('median', float('nan')):.0f} ms p95 {latency.get('p95', float('nan')):.0f} ms, "
            f"return leg median {back.get('median', float('nan')):.0f} ms; CPU per frame: server "
            f"{r['server_cpu_ms_per_frame']:.1f} ms, browser {r['browser_cpu_ms_per_frame']:.1f} ms"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2:])
    else:
        main()
