"""The RabbitMQ management UI as an operator uses it: log in, pick a virtual host, read queues.

Blocking Selenium calls: async tests run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

from dataclasses import dataclass

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import Select, WebDriverWait

from shared.system_topology import SYSTEM_TOPOLOGY
from shared.topology import dead_letter_queue_name, retry_queue_name

# Every queue row links to "#/queues/<vhost>/<name>", both URI-encoded: the href, unlike the
# visible name, says which virtual host the row belongs to. The state cell is the one with the
# coloured key ("running", "idle"; empty until the broker's statistics arrive).
_LISTED_QUEUES = """
return Array.from(document.querySelectorAll('#main table.list tbody tr')).flatMap(row => {
  const link = row.querySelector('a[href^="#/queues/"]');
  if (!link) return [];
  const [vhost, name] = link.getAttribute('href').slice('#/queues/'.length)
    .split('/').map(decodeURIComponent);
  const stateCell = Array.from(row.cells).find(cell => cell.querySelector('.colour-key'));
  return [[vhost, name, stateCell ? stateCell.textContent.trim() : '']];
});
"""


@dataclass(frozen=True)
class ListedQueue:
    vhost: str
    name: str
    state: str


class ManagementUI:
    def __init__(self, driver: WebDriver, base_url: str, timeout: float = 20) -> None:
        self.driver = driver
        self.base_url = base_url.rstrip("/") + "/"
        self.wait = WebDriverWait(driver, timeout)

    def log_in(self, user: str, password: str) -> None:
        self.driver.get(self.base_url)
        self.wait.until(shown.visibility_of_element_located((By.NAME, "username")))
        self.driver.find_element(By.NAME, "username").send_keys(user)
        self.driver.find_element(By.NAME, "password").send_keys(password)
        self.driver.find_element(By.CSS_SELECTOR, "#login input[type=submit]").click()
        try:
            # the user menu with its "Log out" button only exists once logged in
            self.wait.until(shown.presence_of_element_located((By.ID, "logout")))
        except TimeoutException:
            status = self.driver.find_elements(By.ID, "login-status")
            why = status[0].text if status else "no login status shown"
            raise AssertionError(f"could not log into the management UI as {user}: {why}") from None

    def open_queues(self, vhost: str) -> None:
        """The Queues tab, narrowed to one virtual host with the UI's own selector."""
        self.driver.get(f"{self.base_url}#/queues")
        self.wait.until(shown.presence_of_element_located((By.CSS_SELECTOR, "#main h1")))
        selector = self.wait.until(shown.element_to_be_clickable((By.ID, "show-vhost")))
        Select(selector).select_by_value(vhost)
        self.wait.until(
            lambda driver: (
                Select(
                    driver.find_element(By.ID, "show-vhost")
                ).first_selected_option.get_attribute("value")
                == vhost
            )
        )

    def listed_queues(self) -> list[ListedQueue]:
        """Every row the Queues page shows now."""
        rows = self.driver.execute_script(_LISTED_QUEUES)
        return [ListedQueue(vhost, name, state) for vhost, name, state in rows]


def queues_an_operator_expects() -> set[str]:
    """Each work queue with its retry tiers and its dead-letter queue beside it."""
    expected = set()
    for spec in SYSTEM_TOPOLOGY.queues:
        expected.add(spec.name)
        expected.update(retry_queue_name(spec.name, delay) for delay in spec.retry_tiers)
        expected.add(dead_letter_queue_name(spec.name))
    return expected
