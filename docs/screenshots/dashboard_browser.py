"""The dashboard in headless Debian Chromium, for the screenshot scripts beside this file: starts the
dashboard on a home, opens it, and offers the few moves the scripts make (wait for a text, click, open
a sidebar page, save a screenshot once the page has drawn)."""
from __future__ import annotations

import subprocess
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

from funnel.core.config import Config
from funnel.core.procs import stop_process
from funnel.dashboard.launch import run_dashboard

OUT = Path(__file__).resolve().parent


class DashboardBrowser:
    """``with DashboardBrowser(config, port) as b: b.text("..."); b.shot("x.png")``."""

    def __init__(self, config: Config, port: int, height: int = 1500, timeout: float = 300):
        self.config, self.port, self.height, self.timeout = config, port, height, timeout

    def __enter__(self) -> "DashboardBrowser":
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.support.ui import WebDriverWait

        self.proc = run_dashboard(replace(self.config, serve=replace(self.config.serve, dashboard_port=self.port)),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", f"--window-size=1400,{self.height}",
                     f"--user-data-dir={self.config.paths.root / '.chromium-profile'}"):
            opts.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        self.wait = WebDriverWait(self.driver, self.timeout)
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.driver.get(f"http://127.0.0.1:{self.port}")
        return self

    def __exit__(self, *exc) -> None:
        self.driver.quit()
        stop_process(self.proc)

    def text(self, t: str):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        return self.wait.until(ec.presence_of_element_located((By.XPATH, f"//*[contains(normalize-space(.), {t!r})]")))

    def click(self, xpath: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        el = self.wait.until(ec.element_to_be_clickable((By.XPATH, xpath)))
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
        el.click()

    def page(self, name: str) -> None:
        self.click(f"//section[@data-testid='stSidebar']//label[normalize-space(.)={name!r}]")

    def query(self, text: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support import expected_conditions as ec

        box = self.wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "input[aria-label='Query']")))
        box.send_keys(text, Keys.ENTER)

    def charts(self, n: int) -> None:
        """Wait until at least `n` charts are drawn."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, 120).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "canvas, svg.marks")) >= n)

    def shot(self, name: str, scroll_to: str | None = None, settle: float = 2.5) -> None:
        from selenium.webdriver.common.by import By

        if scroll_to:
            el = self.driver.find_element(By.XPATH, f"//*[contains(normalize-space(.), {scroll_to!r})][not(*)]")
            self.driver.execute_script("arguments[0].scrollIntoView();", el)
        time.sleep(settle)  # charts and tables finish drawing
        self.driver.save_screenshot(str(OUT / name))
        print("saved", OUT / name)
