"""The payment sandbox's checkout page, as the applicant who follows the pay link sees it.

Blocking Selenium calls: async tests run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

from dataclasses import dataclass

from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import WebDriverWait


@dataclass(frozen=True)
class CheckoutView:
    heading: str
    amount: str
    pay_button: str | None


@dataclass(frozen=True)
class ResultView:
    heading: str
    text: str


class CheckoutPage:
    def __init__(self, driver: WebDriver, timeout: float = 20) -> None:
        self.driver = driver
        self.wait = WebDriverWait(driver, timeout)

    def open(self, checkout_url: str) -> CheckoutView:
        self.driver.get(checkout_url)
        self.wait.until(shown.visibility_of_element_located((By.CSS_SELECTOR, "main h1")))
        buttons = self.driver.find_elements(By.CSS_SELECTOR, "button.pay")
        return CheckoutView(
            heading=self.driver.find_element(By.CSS_SELECTOR, "main h1").text,
            amount=self.driver.find_element(By.CSS_SELECTOR, ".amount").text,
            pay_button=buttons[0].text if buttons else None,
        )

    def pay(self) -> ResultView:
        button = self.wait.until(shown.element_to_be_clickable((By.CSS_SELECTOR, "button.pay")))
        button.click()
        # the form posts and the provider answers with a new page: wait for the old one to go
        self.wait.until(lambda _: gone(button))
        self.wait.until(shown.visibility_of_element_located((By.CSS_SELECTOR, "main h1")))
        return ResultView(
            heading=self.driver.find_element(By.CSS_SELECTOR, "main h1").text,
            text=self.driver.find_element(By.CSS_SELECTOR, "main").text,
        )


def gone(element: WebElement) -> bool:
    """Whether ``element`` left the page. While the old page is being replaced, Chrome may
    answer with "node does not belong to the document" instead of a stale-element error
    (``staleness_of`` lets that one through): both mean it is gone."""
    try:
        element.is_enabled()
    except WebDriverException:  # StaleElementReferenceException is one
        return True
    return False
