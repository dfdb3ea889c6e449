"""Neo4j Browser end to end, in a real headless Chromium (Selenium + Debian's chromium-driver).

A tiny Keras CNN is loaded with the ``weightgraph load`` CLI; Neo4j Browser 5 (served by the
server on NEO4J_HTTP_PORT) is opened, connected with the password, given ``:param model``
and then the named query ``queries/model_summary.cypher`` pasted verbatim from its file, the
way a user runs the named queries. The table in the result frame must match the per-layer
neuron and edge counts read independently with the official neo4j driver (plain Cypher, no
weightgraph code). A screenshot of the result is saved to tmp_path.

Needs the server of ``scripts/neo4j-local start`` and ``chromium`` + ``chromium-driver``
(``scripts/setup`` installs them); it fails, never skips, when one is missing.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import keras
import neo4j
import pytest
from keras import layers
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

pytestmark = pytest.mark.neo4j

REPO_ROOT = Path(__file__).resolve().parents[1]
QUERY_FILE = REPO_ROOT / "queries" / "model_summary.cypher"
# The CLI of the interpreter running the tests (.venv/bin), else the one on PATH.
WEIGHTGRAPH = (shutil.which("weightgraph", path=str(Path(sys.executable).parent))
               or shutil.which("weightgraph") or "weightgraph")
CHROMEDRIVER = "/usr/bin/chromedriver"
UI_TIMEOUT_S = 20


def setting(key: str, default: str | None = None) -> str | None:
    """``key`` from the environment (scripts/test sources .env), else from .env itself."""
    if os.environ.get(key):
        return os.environ[key]
    env_file = REPO_ROOT / ".env"
    value = default
    if env_file.is_file():
        for line in env_file.read_text().splitlines():
            name, sep, raw = line.strip().removeprefix("export ").partition("=")
            if sep and name.strip() == key:
                value = raw.strip().strip("'\"")
    return value


def tiny_cnn() -> keras.Model:
    inputs = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(2, 3, activation="relu", name="conv")(inputs)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(3, name="dense")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


def cli_environment() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("NEO4J_URI", "NEO4J_USER", "NEO4J_PASSWORD"):
        if setting(key):
            env[key] = setting(key)
    return env


def run_cli(*args: str, check: bool = True) -> None:
    result = subprocess.run([WEIGHTGRAPH, *args], env=cli_environment(), cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 or not check, (
        f"weightgraph {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")


@pytest.fixture
def loaded_model(tmp_path):
    """(name, Keras model) of a tiny CNN loaded into Neo4j by the CLI, deleted afterwards."""
    model = tiny_cnn()
    path = tmp_path / "tiny_cnn.keras"
    model.save(path)
    name = f"browser_{secrets.token_hex(4)}"
    try:
        run_cli("load", str(path), "--name", name, "--quiet")
    except BaseException:
        run_cli("delete", "--name", name, check=False)  # whatever a failed load left behind
        raise
    yield name, model
    run_cli("delete", "--name", name)


@pytest.fixture
def graph_db():
    """The official neo4j driver, straight from the connection settings."""
    uri = setting("NEO4J_URI", "bolt://127.0.0.1:7687")
    auth = (setting("NEO4J_USER", "neo4j"), setting("NEO4J_PASSWORD"))
    with neo4j.GraphDatabase.driver(uri, auth=auth) as driver:
        driver.verify_connectivity()
        yield driver


@pytest.fixture
def chrome(tmp_path):
    """Headless Debian chromium driven through Debian's chromedriver (so selenium-manager
    never tries to download a browser or a driver)."""
    chromium = shutil.which("chromium")
    missing = [what for what, ok in (("chromium", chromium),
                                     ("chromedriver", os.access(CHROMEDRIVER, os.X_OK))) if not ok]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not installed: run scripts/setup "
                    "(apt-get install chromium chromium-driver)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: Chromium refuses to run as root with its sandbox; /dev/shm is small in
    # containers and makes the renderer crash without --disable-dev-shm-usage.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield browser
    finally:
        # The DOM at the end (pass or fail) helps whoever has to fix a changed Browser.
        try:
            (tmp_path / "page.html").write_text(browser.page_source)
        finally:
            browser.quit()


# ----------------------------------------------------------------------- Browser actions
def by_testid(testid: str) -> tuple[str, str]:
    return By.CSS_SELECTOR, f'[data-testid="{testid}"]'


def wait_until(browser, condition, what: str, timeout: float = UI_TIMEOUT_S):
    """``condition``'s first truthy value. React re-renders the frames under our feet, so an
    element gone stale between two calls just means: look again at the next poll."""
    wait = WebDriverWait(browser, timeout, poll_frequency=0.2,
                         ignored_exceptions=[StaleElementReferenceException])
    try:
        return wait.until(condition)
    except TimeoutException:
        frames = browser.execute_script(
            "return [...document.querySelectorAll('[data-testid=\"frame\"]')]"
            ".map(frame => frame.innerText.slice(0, 400));")
        pytest.fail(f"Neo4j Browser: timed out after {timeout} s waiting for {what}; frames on "
                    "screen, newest first:\n" + "\n---\n".join(frames), pytrace=False)


def settled(locator):
    """Expected condition: the element is displayed and has not moved since the last poll
    (the connect frame slides in from above, and keys sent to a moving field are lost)."""
    last_rect = {}

    def condition(browser):
        elements = browser.find_elements(*locator)
        if not elements or not elements[0].is_displayed():
            return False
        rect = elements[0].rect
        stable = rect == last_rect.get("rect")
        last_rect["rect"] = rect
        return elements[0] if stable else False

    return condition


def connect(browser, uri: str, user: str, password: str, database: str | None) -> None:
    """Fill in and submit the ':server connect' form shown to a fresh Browser."""
    scheme, address = urlsplit(uri).scheme, urlsplit(uri).netloc
    address_input = wait_until(browser, settled(by_testid("boltaddress")), "the connect form")
    if scheme in ("bolt", "neo4j"):
        Select(browser.find_element(*by_testid("bolt-scheme-select"))).select_by_value(
            f"{scheme}://")
    address_input.send_keys(Keys.CONTROL, "a")
    address_input.send_keys(address)
    if database:
        browser.find_element(*by_testid("database")).send_keys(database)
    browser.find_element(*by_testid("username")).send_keys(user)
    browser.find_element(*by_testid("password")).send_keys(password)
    browser.find_element(*by_testid("connect")).click()

    # The banner goes as soon as the Bolt connection opens, but a command sent before the
    # Browser has also listed the databases fails with "No connection found": wait until the
    # editor's prompt names the database ("neo4j$" instead of "$").
    def prompt_names_database(browser):
        prompt = browser.find_element(By.CSS_SELECTOR,
                                      '[data-testid="activeEditor"] .line-numbers').text
        return prompt == f"{database}$" if database else len(prompt) > 1 and prompt[-1] == "$"

    wait_until(browser, EC.invisibility_of_element_located(by_testid("disconnectedBanner")),
               "the connection (wrong password?)")
    wait_until(browser, prompt_names_database, "the editor prompt naming the database")


def run_in_editor(browser, text: str) -> None:
    """Paste ``text`` into the main (Monaco) editor and run it. A paste event, not typed keys:
    typing would let Monaco auto-indent every line and auto-close brackets."""
    editor = wait_until(browser, EC.element_to_be_clickable(
        (By.CSS_SELECTOR, '[data-testid="activeEditor"] textarea')), "the editor")
    editor.click()
    browser.execute_script(
        "const data = new DataTransfer();"
        "data.setData('text/plain', arguments[1]);"
        "arguments[0].dispatchEvent(new ClipboardEvent('paste', "
        "{clipboardData: data, bubbles: true, cancelable: true}));", editor, text)
    browser.find_element(*by_testid("editor-Run")).click()


def newest_frame(browser, command_start: str):
    """The newest result frame whose command (shown on one line) starts with
    ``command_start``, or None."""
    for frame in browser.find_elements(*by_testid("frame")):
        command = frame.find_elements(*by_testid("frameCommand"))
        if command and command[0].text.strip().startswith(command_start):
            return frame
    return None


def read_table(frame) -> list[dict[str, str]]:
    """The rows of a result frame's Table view, cell texts as the Browser shows them."""
    header = [th.text for th in frame.find_elements(
        By.CSS_SELECTOR, "table.relatable__table thead th[role=columnheader]")]
    rows = frame.find_elements(By.CSS_SELECTOR, "table.relatable__table tbody tr")
    return [dict(zip(header, (td.text for td in row.find_elements(By.CSS_SELECTOR,
                                                                  "td[role=cell]"))))
            for row in rows]


# ----------------------------------------------------------------------- expected values
def expected_summary(driver: neo4j.Driver, name: str) -> list[dict[str, str]]:
    """model_summary's rows computed with separate, plain Cypher, formatted like the Browser's
    table (strings in double quotes)."""
    database = setting("NEO4J_DATABASE")
    neurons = driver.execute_query(
        "MATCH (n:Neuron {model: $m}) RETURN n.layer_index AS layer_index, n.layer AS layer, "
        "n.op AS op, count(*) AS neurons", m=name, database_=database).records
    edges_in = dict(driver.execute_query(
        "MATCH (:Neuron {model: $m})-[:W]->(n:Neuron) RETURN n.layer_index, count(*)",
        m=name, database_=database).records)
    edges_out = dict(driver.execute_query(
        "MATCH (n:Neuron {model: $m})-[:W]->(:Neuron) RETURN n.layer_index, count(*)",
        m=name, database_=database).records)
    return [{"layer_index": str(r["layer_index"]), "layer": json.dumps(r["layer"]),
             "op": json.dumps(r["op"]), "neurons": str(r["neurons"]),
             "edges_in": str(edges_in.get(r["layer_index"], 0)),
             "edges_out": str(edges_out.get(r["layer_index"], 0))}
            for r in sorted(neurons, key=lambda r: r["layer_index"])]


# ----------------------------------------------------------------------------------- test
def test_model_summary_in_neo4j_browser(chrome, loaded_model, graph_db, tmp_path):
    name, model = loaded_model
    expected = expected_summary(graph_db, name)
    # Guards the oracle itself: every layer with neurons, sized as Keras says.
    assert {row["layer"]: int(row["neurons"]) for row in expected} == {
        json.dumps(layer.name): math.prod(layer.output.shape[1:])
        for layer in model.layers if layer.name != "flatten"}

    uri = setting("NEO4J_URI", "bolt://127.0.0.1:7687")
    chrome.get(f"http://{urlsplit(uri).hostname}:{setting('NEO4J_HTTP_PORT', '7474')}/browser/")
    connect(chrome, uri, setting("NEO4J_USER", "neo4j"), setting("NEO4J_PASSWORD"),
            setting("NEO4J_DATABASE"))

    run_in_editor(chrome, f":param model => '{name}'")

    def parameter_set(browser):
        frame = newest_frame(browser, ":param model")
        return frame is not None and f'"model": "{name}"' in frame.text

    wait_until(chrome, parameter_set, f"the ':param model' frame showing {name}")

    query = QUERY_FILE.read_text()
    run_in_editor(chrome, query)

    def finished_result(browser):
        frame = newest_frame(browser, "// name: model_summary")
        if frame is None or "completed" not in frame.find_element(
                *by_testid("frameStatusbar")).text:
            return False
        return frame, frame.find_element(*by_testid("frameCommand")).text, read_table(frame)

    frame, command, table = wait_until(chrome, finished_result, "the model_summary result")
    chrome.execute_script("arguments[0].scrollIntoView(true);", frame)
    screenshot = tmp_path / "model_summary.png"
    assert chrome.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 0

    # The frame header shows the command that ran, on one line: the file's text, verbatim.
    assert command.split() == query.split()
    assert table == expected
