"""A real Chromium (Debian's chromium + chromium-driver, driven by selenium) for the web pages.

Every test here is marked `browser` (pytestmark): deselect with `-m 'not browser'` where no Chromium exists;
.ci/run installs it and runs them. Selenium blocks, so tests call it through `Browser`, which runs
each call in a thread while the app keeps serving on the event loop."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


class Browser:
    """The blocking webdriver, awaited in a thread."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    async def call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def open(self, url: str) -> None:
        await self.call(self.driver.get, url)

    async def text(self, css: str) -> str:
        return str(await self.call(lambda: self.driver.find_element(By.CSS_SELECTOR, css).text))

    async def count(self, css: str) -> int:
        return len(await self.call(self.driver.find_elements, By.CSS_SELECTOR, css))

    async def type(self, css: str, text: str) -> None:
        await self.call(lambda: self.driver.find_element(By.CSS_SELECTOR, css).send_keys(text))

    async def click(self, css: str) -> None:
        await self.call(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())

    async def wait(self, css: str, within: float = 10.0) -> str:
        """The text of `css` once it is on the page (after a form's navigation)."""
        def find() -> str:
            element = WebDriverWait(self.driver, within).until(
                lambda d: d.find_element(By.CSS_SELECTOR, css))
            return str(element.text)
        return str(await self.call(find))

    async def js(self, script: str) -> Any:
        return await self.call(self.driver.execute_script, script)

    async def screenshot(self, name: str, width: int = 1280) -> None:
        """The whole page at `width` CSS pixels, saved as docs/screenshots/NAME.png."""
        def shoot() -> None:
            height = int(self.driver.execute_script("return document.documentElement.scrollHeight"))
            self.driver.set_window_size(width, min(max(height + 120, 600), 6000))
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
            self.driver.set_window_size(1280, 900)
        await self.call(shoot)


@pytest.fixture(scope="session")
def chromium() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: webdriver.Chrome) -> Browser:
    chromium.delete_all_cookies()
    return Browser(chromium)
