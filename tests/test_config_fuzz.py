"""The config loader on arbitrary input (hypothesis): arbitrary bytes, arbitrary YAML documents,
and the bundled configs with random fields replaced, deleted or added. Every input either loads
into a valid experiment (every scale resolves and plans into runs) or is a UserError of one
line, which the CLI prints as one line with exit code 2 (tests/test_bad_inputs.py); any other
exception is a traceback the user would see, and fails here.
"""

from __future__ import annotations

import copy
import math
import pickle
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from adamrepro.config import SCALES, Experiment, bundled_configs, load_experiment
from adamrepro.errors import UserError
from adamrepro.runner.plan import config_digest, plan

BUNDLED = {path.stem: yaml.safe_load(path.read_text()) for path in bundled_configs()}
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.integers(min_value=-(10**400), max_value=10**400) | st.text(max_size=12)
           | st.sampled_from(["adam", "mnist", "logreg", "sqrt", "float64", "paper", "", "lr"]))
values = st.recursive(
    scalars,
    lambda inner: (st.lists(inner, max_size=4)
                   | st.dictionaries(st.text(max_size=8) | st.sampled_from(["lr", "eps"]), inner,
                                     max_size=4)),
    max_leaves=12,
)
# Pieces of YAML syntax, so that the text strategy reaches tags, anchors, flow collections,
# timestamps, merge keys and odd indentation, not only plain words.
YAML_PIECES = ["name: x", "\n", "  ", "- ", ": ", "{", "}", "[", "]", ",", "&a ", "*a", "<<: ",
               "!!python/object:os.system ", "!!binary ", "!!int ", "!!float ", "!!timestamp ",
               "2001-13-45", "2001-12-14t21:59:43.10-05:00", "0x1F", "1e400", ".nan", ".inf",
               "~", "? ", "|", ">", "'", '"', "#", "---\n", "...\n", "%YAML 1.1\n", "\t", "é",
               "\x00", "\ufeff", "methods:", "dataset: {name: mnist}"]
yaml_texts = st.lists(st.sampled_from(YAML_PIECES) | st.text(max_size=6), max_size=30).map(
    "".join)


def outcome(content: bytes) -> Experiment | str:
    """Load `content` as a config file: the experiment, or the one-line error message."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.yaml"
        path.write_bytes(content)
        try:
            exp = load_experiment(path)
        except UserError as err:
            message = str(err)
            assert message.strip() and "\n" not in message and "\r" not in message, message
            return message
    assert isinstance(exp, Experiment)
    config_digest(exp)  # what `run` stores and compares
    for scale in SCALES:
        resolved = exp.at_scale(scale)
        points = sum(math.prod(len(v) for v in m.grid.values()) for m in exp.methods.values())
        if points * resolved.seeds <= 10_000:  # a config may ask for more: not planned here
            assert plan(resolved)
    return exp


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes(content):
    outcome(content)


@FUZZ
@given(yaml_texts)
def test_arbitrary_yaml_text(text):
    outcome(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(values)
def test_arbitrary_yaml_documents(document):
    outcome(yaml.safe_dump(document, allow_unicode=True).encode())


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a parsed config: keys of mappings and indices of lists, recursively."""
    found = [prefix]
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else []
    for key, child in items:
        found += paths(child, (*prefix, key))
    return found


@st.composite
def edited_configs(draw) -> dict:
    config = copy.deepcopy(BUNDLED[draw(st.sampled_from(sorted(BUNDLED)))])
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(config)))
        if not where:
            continue
        parent = config
        for key in where[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[where[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(values)
        else:
            parent[where[-1]] = draw(values)
    return config


@FUZZ
@given(edited_configs())
def test_bundled_configs_with_random_fields_replaced(config):
    outcome(yaml.safe_dump(config, allow_unicode=True).encode())


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_the_bundled_configs_load(name):
    assert isinstance(outcome(yaml.safe_dump(BUNDLED[name]).encode()), Experiment)


def _containers(value, where="") -> list[tuple[str, object]]:
    """Every dict and list inside a validated config, however deep, with where it lies."""
    found = [(where, value)] if isinstance(value, dict | list) else []
    items = (dict(value).items() if isinstance(value, BaseModel) else value.items()
             if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        found += _containers(item, f"{where}.{key}")
    return found


# Every way a dict or a list changes in place, not only `d[key] = value` and `append`: a
# config's `model.update(...)` or `figures[0] = ...` would edit it for everyone sharing it.
DICT_CHANGES = (lambda d: d.__setitem__("new key", 1), lambda d: d.__delitem__("new key"),
                lambda d: d.update(new_key=1), lambda d: d.setdefault("new key", 1),
                lambda d: d.pop("new key", None), lambda d: d.popitem(), lambda d: d.clear(),
                lambda d: d.__ior__({"new key": 1}))
LIST_CHANGES = (lambda values: values.append(1), lambda values: values.extend([1]),
                lambda values: values.insert(0, 1), lambda values: values.__setitem__(
                    slice(0, 0), [1]), lambda values: values.__delitem__(slice(0, 0)),
                lambda values: values.__iadd__([1]), lambda values: values.__imul__(2),
                lambda values: values.pop(), lambda values: values.remove(1),
                lambda values: values.clear(), lambda values: values.sort(),
                lambda values: values.reverse())


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_a_loaded_config_cannot_be_changed_at_any_depth(name):
    exp = outcome(yaml.safe_dump(BUNDLED[name]).encode())
    changed = exp.model_copy(update={"dataset": {**exp.dataset, "extra": [1]}})
    for config in (exp, changed, pickle.loads(pickle.dumps(exp)), copy.deepcopy(exp)):
        containers = _containers(config)
        assert any(where.endswith(".grid") for where, _ in containers)
        for where, container in containers:
            for change in DICT_CHANGES if isinstance(container, dict) else LIST_CHANGES:
                with pytest.raises(TypeError, match="frozen"):
                    change(container)
                    pytest.fail(f"{where} changed")
    assert changed.dataset["extra"] == [1] and "extra" not in exp.dataset
    assert pickle.loads(pickle.dumps(exp)) == exp


DUPLICATES = {
    "top-level": "name: a\nname: b\n",
    "nested": "training: {epochs: 1, epochs: 2}\n",
    "in a method": "methods:\n  adam:\n    optimizer: adam\n    optimizer: sgd_nesterov\n",
    "same method twice": "methods:\n  adam: {optimizer: adam}\n  adam: {optimizer: adagrad}\n",
}


@pytest.mark.parametrize("text", DUPLICATES.values(), ids=DUPLICATES.keys())
def test_duplicate_keys_are_refused(text):
    """PyYAML keeps the last of two equal keys silently; a careful user calls that a mistake."""
    message = outcome(text.encode())
    assert isinstance(message, str) and "duplicate key" in message and "line " in message


CLI_CASES = {
    "not UTF-8": b"name: \x80\n",
    "duplicate key": b"name: a\nname: b\n",
    "empty explicit int": b"seed: !!int ''\n",
    "impossible date": b"title: 2001-13-45\n",
    "line break in a key": b'"a\\nb": 1\n',
    "huge integer": b"seed: " + b"9" * 400 + b"\n",
}


@pytest.mark.parametrize("content", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_the_cli_says_it_in_one_line(cli, tmp_path, content):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    code, out, err = cli("run", path, "--out", tmp_path / "out")
    assert code == 2 and out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("adamrepro: error: ")
    assert not (tmp_path / "out").exists()
