"""The dashboard end to end in headless Chromium (Debian's, driven by Playwright): a job submitted
through the API appears on the page, runs, finishes, and its output shows in the detail panel."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import REPO, apt_install, job_yaml, wait_for, wait_state

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        reason = apt_install("chromium")
        if reason or not Path(CHROMIUM).exists():
            pytest.skip(f"Chromium cannot be installed here: {reason}")
    pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")
    return CHROMIUM


def test_submitted_job_appears_runs_and_finishes_on_the_page(live_server, chromium, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(live_server)
        expect(page.locator("#summary")).to_contain_text("local executor", timeout=15_000)
        expect(page.locator('.pool[data-pool="local"]')).to_be_visible()

        blocker = httpx.post(f"{live_server}/jobs", content=job_yaml("blocker", "sleep 2")).json()
        job = httpx.post(
            f"{live_server}/jobs", content=job_yaml("browser-job", "echo hello from the dashboard")
        ).json()
        # while the blocker holds the pool, the job waits in the queue, then runs, then finishes
        expect(page.locator('#queue tr[data-job-name="browser-job"]')).to_be_visible(timeout=15_000)
        expect(page.locator('#queue tr[data-job-name="browser-job"] td.why')).to_have_text("Resources")
        expect(page.locator('#running tr[data-job-name="blocker"]')).to_be_visible(timeout=15_000)
        finished = page.locator('#finished tr[data-job-name="browser-job"] td.state')
        expect(finished).to_have_attribute("data-state", "succeeded", timeout=30_000)
        expect(page.locator("#queue tbody")).to_contain_text("queue is empty")

        page.locator(f'#finished tr[data-job-id="{job["id"]}"]').click()
        expect(page.locator("#job-log")).to_contain_text("hello from the dashboard", timeout=10_000)
        expect(page.locator("#detail-section")).to_contain_text("running → succeeded")
        assert blocker["id"] < job["id"]
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "dashboard.png"
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert screenshot.stat().st_size > 10_000
    shutil.copy(screenshot, tmp_path / "dashboard.png")


def test_with_a_read_token_the_page_asks_for_it_and_then_shows_the_service(live_server_factory, chromium):
    from playwright.sync_api import expect, sync_playwright

    from suanli.service.admission import ServiceConfig

    url = live_server_factory(config=ServiceConfig(token="w", read_token="r"))
    job = httpx.post(
        f"{url}/jobs", content=job_yaml("guarded", "echo hi"), headers={"authorization": "Bearer w"}
    ).json()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(url)
        expect(page.locator("#token-form")).to_be_visible(timeout=15_000)
        expect(page.locator("#summary")).to_contain_text("needs a read token")
        page.fill("#token", "wrong")
        page.click("#token-form button")
        expect(page.locator("#summary")).to_contain_text("token was refused", timeout=15_000)
        page.fill("#token", "r")
        page.click("#token-form button")
        expect(page.locator("#summary")).to_contain_text("local executor", timeout=15_000)
        expect(page.locator("#token-form")).to_be_hidden()
        page.locator(f'tr[data-job-id="{job["id"]}"]').first.click()
        expect(page.locator("#job-log")).to_contain_text("hi", timeout=15_000)
        browser.close()


def test_a_planned_job_shows_its_step_time_breakdown(live_server_factory, chromium):
    from playwright.sync_api import expect, sync_playwright

    mixed = REPO / "examples" / "clusters" / "mixed-center.yaml"
    url = live_server_factory(cluster_file=mixed, simulate_speedup=3600.0)
    body = (
        "name: llama8b\nmodel: llama3.1-8b\nresources: {accelerators: H100:64}\nwalltime: 4h\n"
        "training: {seq_len: 4096, global_batch_size: 256, total_tokens: 1B}\n"
    )
    job = httpx.post(f"{url}/jobs", content=body, timeout=30).json()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        expect(page.locator('.pool[data-pool="h100"]')).to_contain_text("/ 384 h100-sxm", timeout=15_000)
        page.locator(f'tr[data-job-id="{job["id"]}"]').first.click()
        breakdown = page.locator("#step-breakdown")
        expect(breakdown).to_contain_text("compute", timeout=10_000)
        expect(page.locator("#detail")).to_contain_text(f"MFU {100 * job['plan']['estimate']['mfu']:.1f}%")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-plan.png"), full_page=True)
        browser.close()


def test_an_operator_sees_pictures_nodes_and_all_jobs_of_a_replayed_trace(server_factory, chromium, tmp_path):
    """The issue's Done-when: `suanli up --simulate mixed-center.yaml --trace philly` in the browser —
    no NaN/undefined text, the charts and the node grid drawn with data, a click on a GPU opens the
    job on it, and the pager reaches the oldest job."""
    from playwright.sync_api import expect, sync_playwright

    mixed = "examples/clusters/mixed-center.yaml"
    server = server_factory(
        tmp_path / "data", "--simulate", mixed, "--trace", "philly", "--speedup", "200000", "--limit", "400"
    )
    api = server.client()
    # every trace job submitted before paging: the last page is counted from the total the page last saw
    wait_for(lambda: api.get("/ops/jobs", params={"limit": 1}).json()["total"] >= 400, 120, 0.5)
    long_job = "name: long-run\nresources: {accelerators: H100:16}\nwalltime: 100000h\nrun: train\n"
    job = api.post("/jobs", content=long_job).json()
    wait_state(api, job["id"], {"running"}, 30)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1200})
        page.goto(server.url)
        expect(page.locator("#summary")).to_contain_text("simulated executor", timeout=20_000)
        for chart in ("#chart-utilization", "#chart-pending", "#chart-queues"):
            expect(page.locator(f"{chart}")).not_to_have_attribute("data-points", "0", timeout=20_000)
        expect(page.locator("#chart-utilization polyline")).to_have_count(5)
        expect(page.locator(".gpu[data-node][data-gpu]")).to_have_count(1024 + 64)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "operator-cluster.png"), full_page=True)

        cell = page.locator(f'.gpu.busy[data-job-id="{job["id"]}"]')
        expect(cell).to_have_count(16)
        cell.first.click()
        expect(page.locator("#detail-title")).to_contain_text(f"{job['id']} · long-run", timeout=10_000)
        expect(page.locator("#job-charts")).to_contain_text("no step metrics")
        page.screenshot(path=str(ARTIFACTS / "operator-job.png"), full_page=True)

        page.locator("#page-last").click()
        expect(page.locator('#jobs tr[data-job-id="1"]')).to_be_visible(timeout=10_000)
        expect(page.locator("#page-next")).to_be_disabled()
        page.select_option('#filters select[name="state"]', "finished")
        expect(page.locator("#page-info")).to_contain_text("jobs 1–", timeout=10_000)
        states = page.locator("#jobs td.state").evaluate_all("cells => cells.map(c => c.dataset.state)")
        assert states and set(states) <= {"succeeded", "failed", "cancelled"}
        text = page.locator("body").inner_text()
        assert "NaN" not in text and "undefined" not in text
        page.screenshot(path=str(ARTIFACTS / "operator-jobs.png"), full_page=True)
        browser.close()


def test_a_jobs_page_draws_its_curves_beside_its_plan(live_server, chromium):
    """A job whose run reports steps (as suanli's runtime does): loss, tokens/s, MFU and goodput and
    the measured step time are drawn over its steps, a checkpoint marked on them."""
    from playwright.sync_api import expect, sync_playwright

    steps = [
        {
            "event": "step",
            "step": s,
            "loss": 4.0 - 0.3 * s,
            "tokens_per_s": 900.0 + s,
            "mfu": 0.3,
            "goodput": 0.8,
            "step_time_s": 0.5,
        }
        for s in range(1, 9)
    ]
    steps.append({"event": "checkpoint", "step": 4, "checkpoint": "/tmp/ckpt-4"})
    lines = " ".join(f"echo '{json.dumps(s)}' >> $SUANLI_METRICS_FILE;" for s in steps)
    job = httpx.post(live_server + "/jobs", content=job_yaml("curves", f"{lines} sleep 30")).json()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(live_server)
        page.locator(f'#running tr[data-job-id="{job["id"]}"]').click(timeout=15_000)
        expect(page.locator("#chart-loss")).to_have_attribute("data-points", "8", timeout=15_000)
        expect(page.locator("#chart-mfu polyline")).to_have_count(2)
        expect(page.locator("#chart-loss line.marker")).to_have_count(1)
        expect(page.locator("#detail-rest")).to_contain_text("step 4: /tmp/ckpt-4")
        assert "NaN" not in page.locator("#detail-section").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#detail-section").screenshot(path=str(ARTIFACTS / "operator-job-curves.png"))
        browser.close()
    httpx.post(f"{live_server}/jobs/{job['id']}/cancel")
