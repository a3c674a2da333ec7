"""The dashboard end to end in headless Chromium (Debian's, driven by Playwright): a job submitted
through the API appears on the page, runs, finishes, and its output shows in the detail panel."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import REPO, apt_install, job_yaml

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
        expect(page.locator('#running tr[data-job-name="blocker"]')).to_be_visible(timeout=15_000)
        finished = page.locator('#finished tr[data-job-name="browser-job"] td.state')
        expect(finished).to_have_attribute("data-state", "succeeded", timeout=30_000)
        expect(page.locator("#queue tbody")).to_contain_text("queue is empty")

        page.locator(f'#finished tr[data-job-id="{job["id"]}"]').click()
        expect(page.locator("#job-log")).to_contain_text("hello from the dashboard", timeout=10_000)
        expect(page.locator("#detail")).to_contain_text("running → succeeded")
        assert blocker["id"] < job["id"]
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "dashboard.png"
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert screenshot.stat().st_size > 10_000
    shutil.copy(screenshot, tmp_path / "dashboard.png")


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
