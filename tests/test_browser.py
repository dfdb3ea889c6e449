"""Neo4j Browser end to end, in a real headless Chromium (Selenium + Debian's chromium-driver).

A tiny Keras CNN is loaded with the ``weightgraph load`` CLI and Neo4j Browser 5 (served by the
server on NEO4J_HTTP_PORT) is driven as a user would:

* ``test_model_summary_in_neo4j_browser``: connect, ``:param model`` and the named query
  ``queries/model_summary.cypher`` pasted verbatim from its file; the table must match the
  per-layer neuron and edge counts read independently with the official neo4j driver.
* ``test_weightgraph_guide_in_neo4j_browser``: ``weightgraph browser --no-open`` serves the
  guide; the URL it prints is opened, the guide appears in the sidebar, the user logs in and
  clicks the play icons of the ``:style`` block and of the first three query slides' ``:param``
  and query blocks; each result table must equal the same query file run through the driver
  with the parameters the Browser shows it set. Then the ``cone_graph`` slide draws a small
  cone: every drawn neuron must have its layer kind's colour, its degree class's size and a
  ``layer:index`` caption, as queries/weightgraph.grass says. Screenshots go to tmp_path.

Needs the server of ``scripts/neo4j-local start`` and ``chromium`` + ``chromium-driver``
(``scripts/test`` installs them); it fails, never skips, when one is missing.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import keras
import neo4j
import numpy as np
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
STYLE = json.loads((REPO_ROOT / "queries" / "weightgraph.grass").read_text())
# The CLI of the interpreter running the tests (.venv/bin), else the one on PATH.
WEIGHTGRAPH = (shutil.which("weightgraph", path=str(Path(sys.executable).parent))
               or shutil.which("weightgraph") or "weightgraph")
CHROMEDRIVER = "/usr/bin/chromedriver"
UI_TIMEOUT_S = 20
GRAPH_TIMEOUT_S = 90  # the force layout of the graph view is slow on a busy 2-core machine
# The test's own reading of tiny_cnn: layer name -> layer kind.
KIND_OF = {"image": "Input", "conv": "Conv", "pool": "Pooling", "dense": "Dense"}


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
    """8x8x1 -> Conv2D(2, 3x3, relu) -> MaxPooling2D(2) -> Dense(3). Conv channel 1 has only
    negative weights and a negative bias, so ``dead_relus`` has rows to show."""
    inputs = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(2, 3, activation="relu", name="conv")(inputs)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(3, name="dense")(x)
    model = keras.Model(inputs, outputs, name="tiny_cnn")
    kernel, bias = model.get_layer("conv").get_weights()
    kernel[..., 1] = -np.abs(kernel[..., 1]) - 0.01
    bias[1] = -0.1
    model.get_layer("conv").set_weights([kernel, bias])
    return model


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
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    # --no-sandbox: Chromium refuses to run as root with its sandbox; /dev/shm is small in
    # containers and makes the renderer crash without --disable-dev-shm-usage. No QUIC, no
    # first-run, background, component-update or sync traffic: nothing outside this machine
    # is reached (the Browser's fonts and analytics fail quietly). A fresh profile: no style,
    # parameters or credentials left by another run in the Browser's local storage.
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                     f"--user-data-dir={profile}", "--window-size=1400,1000"):
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


# ----------------------------------------------------------------------- the guide
@pytest.fixture
def guide_url(loaded_model):
    """The Browser URL ``weightgraph browser --no-open`` prints for the loaded model; the
    command serves until the test ends, then gets Ctrl-C and must stop cleanly."""
    name, _ = loaded_model
    process = subprocess.Popen(
        [WEIGHTGRAPH, "browser", "--model", name, "--no-open", "--quiet"],
        env=cli_environment(), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    printed = b""
    try:
        # Raw reads: a buffered readline would keep lines that select() no longer sees.
        with selectors.DefaultSelector() as sel:
            sel.register(process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + 180
            while b"/browser/?cmd=guide&arg=" not in printed or not printed.endswith(b"\n"):
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    pytest.fail("weightgraph browser printed no Browser URL:\n"
                                + (printed + process.stderr.read()).decode(), pytrace=False)
                if sel.select(timeout=1):
                    printed += os.read(process.stdout.fileno(), 65536)
        yield next(line for line in printed.decode().splitlines()
                   if "/browser/?cmd=guide&arg=" in line).strip()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
    assert process.returncode == 0, process.stderr.read().decode()


def drawer(browser):
    return browser.find_element(*by_testid("guidesDrawer"))


def run_block(browser, block, finished, what: str, timeout: float = UI_TIMEOUT_S):
    """Click ``block``'s play icon (a guide's runnable block) and return the new frame once
    ``finished(frame)`` holds: new frames go on top of the stream."""
    before = len(browser.find_elements(*by_testid("frame")))
    command = block.text.strip()
    block.find_element(By.CSS_SELECTOR, "i.fa-play-circle-o").click()

    def new_frame(browser):
        frames = browser.find_elements(*by_testid("frame"))
        if len(frames) <= before:
            return False
        top = frames[0]
        shown = top.find_elements(*by_testid("frameCommand"))
        if not shown or shown[0].text.split() != command.split():
            return False
        return top if finished(top) else False

    return wait_until(browser, new_frame, what, timeout)


def completed(frame) -> bool:
    bar = frame.find_elements(*by_testid("frameStatusbar"))
    return bool(bar) and "completed" in bar[0].text.lower()


def js_number(value: float) -> str:
    """A float as Neo4j Browser's table shows it: JavaScript's Number#toString, with '.0'
    after whole numbers."""
    if math.isnan(value) or math.isinf(value):
        return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[repr(value)]
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digits)).lstrip("0") or "0"
    point = len(digits) + exponent  # the decimal point sits after this many digits
    if value == int(value) and abs(value) < 1e21:
        text = str(int(abs(value))) + ".0"
    elif 0 < point <= 21:
        text = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        text = (digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
                + f"e{'+' if point - 1 >= 0 else '-'}{abs(point - 1)}")
    return ("-" if sign and value != 0 else "") + text


def browser_cell(value) -> str:
    """A driver value as the Browser's table cell shows it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return js_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(browser_cell(v) for v in value) + "]"
    raise TypeError(f"no Browser cell format for {type(value).__name__}")


def degree_class(degree: int) -> str:
    """The style file's degree class holding ``degree`` (read from its rule names)."""
    for key in STYLE:
        name = key.removeprefix("node.Degree")
        if key.startswith("node.Degree"):
            if name.endswith("plus") and degree >= int(name.removesuffix("plus")):
                return key
            low, _, high = name.partition("to")
            if high and int(low) <= degree <= int(high):
                return key
    raise AssertionError(f"no degree class for {degree}")


def test_weightgraph_guide_in_neo4j_browser(chrome, loaded_model, guide_url, graph_db,
                                            tmp_path):
    name, _ = loaded_model
    database = setting("NEO4J_DATABASE")
    host = urlsplit(setting("NEO4J_URI", "bolt://127.0.0.1:7687")).hostname
    assert guide_url.startswith(f"http://{host}:{setting('NEO4J_HTTP_PORT', '7474')}"
                                "/browser/?cmd=guide&arg=")
    chrome.get(guide_url)
    # The guide opens in the sidebar before anyone logs in (its host, localhost, is on the
    # Browser's built-in allowlist).
    wait_until(chrome, lambda b: f"weightgraph: {name}" in drawer(b).text,
               "the weightgraph guide in the sidebar")
    connect(chrome, setting("NEO4J_URI", "bolt://127.0.0.1:7687"),
            setting("NEO4J_USER", "neo4j"), setting("NEO4J_PASSWORD"), database)

    style = run_block(chrome, drawer(chrome).find_element(By.CSS_SELECTOR, "pre[data-style]"),
                      lambda f: "node.Conv" in f.text, "the :style frame")
    assert '"{layer}:{index}"' in style.text  # the caption survived the Browser's parser
    chrome.save_screenshot(str(tmp_path / "first_slide.png"))

    # The first three query blocks, slide by slide, each after its slide's :param block.
    compared: list[str] = []
    for _ in range(12):
        for block in drawer(chrome).find_elements(By.CSS_SELECTOR, "pre[data-query]"):
            query_name = block.get_attribute("data-query")
            params_block = drawer(chrome).find_element(
                By.CSS_SELECTOR, f'pre[data-params="{query_name}"]')
            frame = run_block(chrome, params_block,
                              lambda f: "Successfully set your parameters" in f.text,
                              f"the :param frame of {query_name}")
            params = json.loads(frame.find_element(*by_testid("rawParamData")).text)
            assert params["model"] == name
            frame = run_block(chrome, block, completed, f"the {query_name} result")
            table = wait_until(chrome, lambda b, f=frame: read_table(f) or False,
                               f"the {query_name} table")
            query = (REPO_ROOT / "queries" / f"{query_name}.cypher").read_text()
            result = graph_db.execute_query(query, params, database_=database)
            expected = [{key: browser_cell(r[key]) for key in result.keys}
                        for r in result.records]
            assert expected, f"{query_name} answers no row: the comparison would prove little"
            assert list(table[0]) == result.keys, query_name
            assert sorted(map(list, map(dict.values, table))) == \
                sorted(map(list, map(dict.values, expected))), query_name
            chrome.save_screenshot(str(tmp_path / f"{len(compared)}_{query_name}.png"))
            compared.append(query_name)
        if len(compared) >= 3:
            break
        chrome.find_element(*by_testid("guideNextSlide")).click()
    assert compared[0] == "model_summary" and len(compared) == 3, compared

    # The styled graph of a small cone: the cone_graph slide.
    for _ in range(30):
        cone = drawer(chrome).find_elements(By.CSS_SELECTOR, 'pre[data-query="cone_graph"]')
        if cone:
            break
        chrome.find_element(*by_testid("guideNextSlide")).click()
    frame = run_block(chrome, drawer(chrome).find_element(
        By.CSS_SELECTOR, 'pre[data-params="cone_graph"]'),
        lambda f: "Successfully set your parameters" in f.text, "the cone_graph :param frame")
    params = json.loads(frame.find_element(*by_testid("rawParamData")).text)
    cone_query = (REPO_ROOT / "queries" / "cone_graph.cypher").read_text()
    records = graph_db.execute_query(cone_query, params, database_=database).records
    nodes = {n.element_id: n for r in records for n in r["path"].nodes}
    # The Browser names a drawn node by its internal id; its degree is counted here.
    expected = {str(r["nid"]): (nodes[r["e"]], r["degree"]) for r in graph_db.execute_query(
        "MATCH (n) WHERE elementId(n) IN $ids "
        "RETURN elementId(n) AS e, id(n) AS nid, COUNT { (n)--() } AS degree",
        ids=list(nodes), database_=database).records}
    assert {n["layer"] for n, _ in expected.values()} == {"pool", "conv", "image"}

    # A graph result's status bar counts nodes instead of saying "completed".
    frame = run_block(chrome, cone[0], lambda f: f.find_elements(By.CSS_SELECTOR, "svg g.node"),
                      "the cone_graph result", GRAPH_TIMEOUT_S)

    def drawn(browser):
        found = frame.find_elements(By.CSS_SELECTOR, "svg g.node")
        ids = {g.get_attribute("aria-label").removeprefix("graph-node") for g in found}
        return found if ids == set(expected) else False

    found = wait_until(chrome, drawn, f"the cone's {len(expected)} neurons drawn",
                       timeout=GRAPH_TIMEOUT_S)
    for g in found:
        node, degree = expected[g.get_attribute("aria-label").removeprefix("graph-node")]
        circle = g.find_element(By.CSS_SELECTOR, "circle.b-outline")
        kind_colour = STYLE[f"node.{KIND_OF[node['layer']]}"]["color"]
        assert circle.get_attribute("fill").upper() == kind_colour.upper(), dict(node)
        diameter = STYLE[degree_class(degree)]["diameter"]
        assert float(circle.get_attribute("r")) == int(diameter.removesuffix("px")) / 2, \
            dict(node)
        caption = "".join(t.get_attribute("textContent") for t in
                          g.find_elements(By.CSS_SELECTOR, "text.caption"))
        shown = caption.replace(" ", "").rstrip("…")
        assert shown and f"{node['layer']}:{node['index']}".startswith(shown), caption
    # The picture (docs/browser_guide.png is one): without the product-analytics banner and
    # the overview panel, once the force layout has settled.
    banner = ("//span[starts-with(normalize-space(.), 'To help make Neo4j Browser better')]"
              "/following-sibling::span")
    for close in chrome.find_elements(By.XPATH, banner):
        close.click()
    for collapse in frame.find_elements(
            By.CSS_SELECTOR, 'button[aria-label="Collapse the node properties display"]'):
        collapse.click()
    time.sleep(5)
    chrome.execute_script("arguments[0].scrollIntoView(true);", frame)
    screenshot = tmp_path / "cone_graph.png"
    assert chrome.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 0
