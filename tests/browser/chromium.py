"""Headless Debian Chromium driven by Selenium, with nothing fetched from the network.

The binaries come from Debian packages (``scripts/ensure-browser.sh``). Naming both paths keeps
Selenium Manager from looking for a driver to download, and the flags keep Chromium from
calling home: on a machine without internet it would otherwise stall on refused connections.
"""

from __future__ import annotations

from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1400, 1000)

FLAGS = (
    "--headless=new",
    "--no-sandbox",  # tests run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
)


def missing_binaries() -> list[Path]:
    return [path for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]


def chromium_options(profile_dir: Path) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    # A fresh profile per run: no cookies or cached UI state leak between runs.
    options.add_argument(f"--user-data-dir={profile_dir}")
    return options


def start_chromium(profile_dir: Path, page_load_timeout: float = 30) -> WebDriver:
    driver = webdriver.Chrome(
        service=Service(executable_path=str(CHROMEDRIVER)),
        options=chromium_options(profile_dir),
    )
    driver.set_page_load_timeout(page_load_timeout)
    return driver


def save_screenshot(driver: WebDriver, path: Path) -> Path:
    """The whole page, not only the window: grow the window to the page's height first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # the window size includes the browser's own frame: size the viewport, not the window
    page, viewport = driver.execute_script(
        "return [document.documentElement.scrollHeight, window.innerHeight]"
    )
    frame = driver.get_window_size()["height"] - int(viewport)
    driver.set_window_size(WINDOW[0], max(WINDOW[1], int(page) + frame))
    try:
        if not driver.save_screenshot(str(path)):
            raise AssertionError(f"Chromium could not write {path}")
    finally:
        driver.set_window_size(*WINDOW)
    return path
