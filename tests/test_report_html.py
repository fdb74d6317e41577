"""`conductor report --html`: one self-contained page, everything escaped, and the Gantt chart
and DAG really drawn (rendered and screenshotted in headless Chromium)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from reportkit import CLAUDE_SCRIPT, CLAUDE_TRACK, cli, git_repo, run_track

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FAILED_RGB = (0xD6, 0x45, 0x45)
COMPLETE_RGB = (0x2E, 0x9D, 0x57)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The HTML report of the Claude track (one failed attempt, two complete, one denial)."""
    root = tmp_path_factory.mktemp("html")
    repo, state = git_repo(root / "repo"), root / "state"
    result = run_track(repo, state, CLAUDE_TRACK, CLAUDE_SCRIPT)
    assert result.returncode == 0, result.stderr[-3000:]
    target = root / "report.html"
    out = cli(repo, state, "report", str(repo / "track.yaml"), "--html", str(target))
    assert out.exit_code == 0, out.output
    assert f"wrote {target}" in out.output
    yield target


def test_html_is_one_file_that_loads_nothing(page: Path) -> None:
    """No scripts, stylesheets, fonts, images or frames from anywhere: CSS and SVG inline."""
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    lowered = html.lower()
    for needle in ("<script", "<link", "<img", "<iframe", "@import", "@font-face", "src=",
                   "href=", "url(http", "url(//"):
        assert needle not in lowered, needle
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="gantt"' in html
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="dag"' in html


def test_html_escapes_every_string_from_the_bus_and_track(page: Path) -> None:
    """A task name with a script tag and a description with markup appear as text only."""
    html = page.read_text()
    assert "<script>" not in html and "<b>small</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "A &lt;b&gt;small&lt;/b&gt; story &amp; its title" in html


def test_html_has_a_bar_per_attempt_and_a_node_per_task(page: Path) -> None:
    """The Gantt chart has one bar per attempt coloured by outcome; the DAG a node per task and
    an edge per dependency; the tables carry verify results, denials and cost per agent."""
    html = page.read_text()
    gantt = html[html.index('id="gantt"'):html.index("</svg>", html.index('id="gantt"'))]
    assert re.findall(r'data-outcome="(\w+)"', gantt) == ["failed", "complete", "complete"]
    dag = html[html.index('id="dag"'):]
    dag = dag[:dag.index("</svg>")]
    assert re.findall(r'data-status="(\w+)"', dag) == ["complete", "complete"]
    assert dag.count('class="edge"') == 1
    assert "grep -q hello hello.txt" in html and "other.txt" in html
    assert "tech-writer" in html and "$0.0350" in html


def _png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGB(A) rows of an 8-bit PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = 0
    colour = depth = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = prev[i]
            corner = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r) if bpp == 3 else _rgb(r) for r in rows]


def _rgb(row: bytes) -> bytes:
    return b"".join(row[i:i + 3] for i in range(0, len(row), 4))


def _longest_run(rows: list[bytes], rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The longest horizontal run of pixels of exactly ``rgb``: (length, x_end, y)."""
    needle = bytes(rgb)
    best = (0, 0, 0)
    for y, row in enumerate(rows):
        run = 0
        for x in range(len(row) // 3):
            if row[3 * x:3 * x + 3] == needle:
                run += 1
                if run > best[0]:
                    best = (run, x, y)
            else:
                run = 0
    return best


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}", *args],
        capture_output=True, text=True, timeout=180, check=False,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_headless_chromium_draws_the_gantt_chart_and_the_dag(page: Path, tmp_path: Path) -> None:
    """Chromium renders the page: the SVG bars and nodes survive in the DOM, and the screenshot
    shows a red bar (the failed attempt) high on the page where the Gantt chart is, and green."""
    dom = _chromium("--dump-dom", page.as_uri(), tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('class="bar"') == 3
    assert dom.stdout.count('class="node"') == 2
    assert re.search(r'<svg[^>]*id="gantt"', dom.stdout)
    assert re.search(r'<svg[^>]*id="dag"', dom.stdout)
    shot = tmp_path / "report.png"
    taken = _chromium(f"--screenshot={shot}", "--window-size=1200,900", page.as_uri(), tmp=tmp_path)
    assert shot.is_file(), taken.stderr[-2000:]
    width, height, rows = _png_pixels(shot)
    assert (width, height) == (1200, 900)
    assert len(set(rows)) > 50, "the screenshot is blank"
    # The Gantt chart comes first: in the upper half, a bar is a long run of one colour
    # (the legend's swatches are 11 pixels wide).
    top = rows[: height // 2]
    red, red_end, _ = _longest_run(top, FAILED_RGB)
    assert red >= 100, f"no failed-attempt bar was drawn (longest red run {red} px)"
    green, green_end, _ = _longest_run(top, COMPLETE_RGB)
    assert green >= 100, f"no complete-attempt bar was drawn (longest green run {green} px)"
    assert green_end > red_end, "the complete attempts are not drawn after the failed one"


def test_dag_columns_follow_dependencies_whatever_the_file_order() -> None:
    """Tasks listed before their dependencies still sit in columns after them."""
    from conductor.liveness import Runner
    from conductor.report import Report, TaskSummary
    from conductor.report_html import dag_svg

    tasks = [
        TaskSummary("ship", "", "pending", ["test", "build"]),
        TaskSummary("test", "", "pending", ["build"]),
        TaskSummary("build", "", "complete", []),
    ]
    svg = dag_svg(Report("t", "", tasks, Runner("ended"), has_graph=True))
    xs = {
        m.group(2): float(m.group(1))
        for m in re.finditer(r'<rect x="([\d.]+)"[^>]*><title>(\w+)', svg)
    }
    assert xs["build"] < xs["test"] < xs["ship"]
    assert svg.count('class="edge"') == 3


def test_html_shows_control_characters_from_a_task_as_text() -> None:
    """A reason quoting a task's escape sequences appears as visible text, with no raw
    control character in the page."""
    from datetime import UTC, datetime

    from conductor.liveness import Runner
    from conductor.messages import Message
    from conductor.report import build_report
    from conductor.report_html import render_html

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    messages = [
        Message(seq=1, id="1" * 32, type="TRACK_STARTED", ts=t0, track="t", task=None,
                worker=None, attempt=None, payload={}),
        Message(seq=2, id="2" * 32, type="TASK_DISPATCHED", ts=t0, track="t", task="a",
                worker="a.1", attempt=1, payload={"executor": "shell"}),
        Message(seq=3, id="3" * 32, type="TASK_FAILED", ts=t0, track="t", task="a",
                worker="a.1", attempt=1,
                payload={"error": "exit 3\n\x1b[31m<b>red", "final": True}),
    ]
    html = render_html(build_report(messages, "t", Runner("ended")), now=t0)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", html)
    assert "\\x1b[31m&lt;b&gt;red" in html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_long_unbroken_names_and_reasons_wrap_within_the_page(tmp_path: Path) -> None:
    """A description, task name and failure reason with no space to break at wrap inside the
    window instead of widening the page (measured by Chromium's layout)."""
    from datetime import UTC, datetime

    from conductor.liveness import Runner
    from conductor.messages import Message
    from conductor.report import Report, TaskSummary, build_report
    from conductor.report_html import render_html

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    messages = [
        Message(seq=1, id="1" * 32, type="TRACK_STARTED", ts=t0, track="t", task=None,
                worker=None, attempt=None, payload={}),
        Message(seq=2, id="2" * 32, type="TASK_DISPATCHED", ts=t0, track="t", task="a",
                worker="a.1", attempt=1, payload={"executor": "shell", "name": "N" * 300}),
        Message(seq=3, id="3" * 32, type="TASK_FAILED", ts=t0, track="t", task="a",
                worker="a.1", attempt=1, payload={"error": "Z" * 3000, "final": True}),
    ]
    built = build_report(messages, "t", Runner("ended"))
    report = Report("t", "D" * 400, [TaskSummary("a", "N" * 300, "failed", [])], built.runner,
                    runs=1, messages=3, first=t0, last=t0)
    report.tasks[0].attempts = built.tasks[0].attempts
    html = render_html(report, now=t0)
    # The page loads no script; this copy measures its own width once laid out.
    probe = "<script>document.title = 'W' + document.documentElement.scrollWidth</script>"
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", probe + "</body>"))
    dom = _chromium("--dump-dom", "--window-size=1000,800", page.as_uri(), tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    width = re.search(r"<title>W(\d+)</title>", dom.stdout)
    assert width is not None, dom.stdout[:500]
    assert int(width.group(1)) <= 1000


def test_a_long_task_id_is_fitted_inside_its_dag_node() -> None:
    """A task id too long for its node is clipped and squeezed to the node's width; a short
    one is drawn as it is."""
    from conductor.liveness import Runner
    from conductor.report import Report, TaskSummary
    from conductor.report_html import dag_svg

    long_id = "integration-tests-for-the-payments-module"
    tasks = [TaskSummary(long_id, "", "failed", []), TaskSummary("b", "", "blocked", [long_id])]
    svg = dag_svg(Report("t", "", tasks, Runner("ended"), has_graph=True))
    node = re.search(r'<rect x="[\d.]+" y="[\d.]+" width="(\d+)"', svg)
    assert node is not None
    labels = re.findall(r'<text [^>]*style="font-size:13px;font-weight:600">([^<]*)</text>', svg)
    fitted = re.findall(r'textLength="(\d+)" lengthAdjust="spacingAndGlyphs"', svg)
    assert labels == [long_id[:25] + "…", "b"]
    assert fitted == [str(int(node.group(1)) - 18)]
