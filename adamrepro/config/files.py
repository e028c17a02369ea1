"""Config files: the YAML loader (strict: duplicate keys, base-60 numbers and the like are
refused), a file parsed once into a checked, frozen Experiment, and the bundled configs
found by name, in a checkout or an installed wheel."""

from __future__ import annotations

import site
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from adamrepro import wording
from adamrepro.config.checks import check_precision, check_registries
from adamrepro.config.schema import REQUIRED, Experiment
from adamrepro.errors import UserError
from adamrepro.options import (
    location,
    message,
)


def bundled_config_dir(package: Path | None = None, prefix: Path | None = None) -> Path:
    """The bundled experiments' folder: the checkout's `configs/` beside the package (a clone,
    an editable install), else where a wheel installs them (pyproject's data-files:
    <prefix>/share/adamrepro/configs), so `pip install adamrepro` still runs them by name."""
    package = package or Path(__file__).resolve().parent.parent  # adamrepro/, not config/
    beside = package.parent / "configs"
    if beside.is_dir():
        return beside
    share = Path("share") / "adamrepro" / "configs"
    # pip puts a wheel's data files under the scheme's prefix: this interpreter's (a venv),
    # or the one site-packages lies in (pip --prefix, --user, a system /usr/local install):
    # <prefix>/lib/pythonX.Y/site-packages, or <prefix>/Lib/site-packages on Windows.
    roots = [prefix or Path(sys.prefix), *package.parents[2:4], Path(site.getuserbase())]
    return next((root / share for root in roots if (root / share).is_dir()), beside)


CONFIG_DIR = bundled_config_dir()


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML would keep the
    last one silently; a careful user calls that a mistake). Merge keys (`<<`) may still be
    overridden, as YAML intends."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False):
    first: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            mark = first.setdefault(key, key_node.start_mark)
        except TypeError:  # an unhashable key: construct_mapping says so below
            continue
        if mark is not key_node.start_mark:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark,
                f"duplicate key {key!r} (first given at line {mark.line + 1})",
                key_node.start_mark)
    return loader.construct_mapping(node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _refuse_base_60(construct):
    """YAML 1.1 reads `1:30` as the base-60 number 90 (and `1:30.5` as 90.5): `epochs: 1:30`
    trained 90 passes without a word. A number written so is refused, with its value."""
    def constructor(loader: StrictLoader, node: yaml.ScalarNode):
        value = construct(loader, node)
        if ":" in str(node.value):
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value} is a base-60 number to YAML 1.1 ({value!r}); write "
                f"{value!r}, or quote it for text", node.start_mark)
        return value
    return constructor


for _tag, _construct in (("int", yaml.SafeLoader.construct_yaml_int),
                         ("float", yaml.SafeLoader.construct_yaml_float)):
    StrictLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_base_60(_construct))


def parse_experiment(raw: Any, where: str) -> Experiment:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: the file must hold a mapping of keys (name, dataset, ...)")
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as err:
        # An unknown key is usually a typo of a known one: report it before what it left out.
        first = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        more = (f" (and {wording.count(err.error_count() - 1, 'more problem')})"
                if err.error_count() > 1 else "")
        fix = ""
        if first["type"] == "missing" and len(first["loc"]) == 1:
            fix = (f"; add it (every config has {', '.join(REQUIRED)}; "
                   f"configs/logreg_mnist.yaml is an example)")
        if first["type"] == "extra_forbidden":
            known = _keys_at(Experiment, first["loc"][:-1])
            home = _section_of(str(first["loc"][-1]))
            if home and known:  # `batch_size` under a scale: not "did you mean 'test_size'?"
                fix = f"; {first['loc'][-1]} belongs under {home} (here: {', '.join(known)})"
            elif known:
                nearest = wording.did_you_mean(str(first["loc"][-1]), known)
                fix = f"; {nearest or 'it takes ' + ', '.join(known)}"
        raise UserError(f"{where}: {location(first)}: {message(first)}{fix}{more}") from None
    check_precision(exp.training, where)
    return check_registries(exp, where)


def _section_of(key: str) -> str | None:
    """The top-level section whose keys include `key` (`training` for `batch_size`), where
    one does: a key given in the wrong section."""
    return next((section for section in ("training", "selection", "plot")
                 if key in _keys_at(Experiment, (section,))), None)


def _keys_at(model: type, loc: tuple) -> list[str]:
    """The keys a config takes at `loc` (the mapping a pydantic error's location is in):
    `("methods", "lion")` is a MethodSpec's. Empty where `loc` leads to no model."""
    import typing

    from pydantic import BaseModel

    def model_in(annotation):  # `MethodSpec | None`, `dict[str, MethodSpec]`'s value
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        if typing.get_origin(annotation) is dict:
            return ("dict", typing.get_args(annotation)[1])
        return next((m for m in map(model_in, typing.get_args(annotation))
                     if m is not None), None)

    here = model
    for part in loc:
        if isinstance(here, tuple):  # a mapping's value, whatever its key
            here = model_in(here[1])
        elif here is not None and part in here.model_fields:
            here = model_in(here.model_fields[part].annotation)
        else:
            return []
    return list(here.model_fields) if isinstance(here, type) else []


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate a config file; any problem is a UserError naming file and key."""
    path = Path(path)
    if not path.is_file():
        hint = f"; bundled configs: {bundled_names()}"
        if not path.exists():  # `LOGREG_MNIST`, `logreg_mnst`, `logreg_mnist.yaml` here
            near = wording.did_you_mean(path.stem.lower(), [p.stem for p in bundled_configs()])
            if near:
                near = near.replace("did you mean ", "did you mean the bundled config ")
                hint = f"; {near} (bundled configs: {bundled_names()})"
        what = ("is a folder, not a config file" if path.is_dir() else
                "is not a regular file (a device, a pipe, a socket)" if path.exists()
                else "does not exist")
        raise UserError(f"config file {path} {what}{hint}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    try:
        raw = yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "malformed YAML"
        raise UserError(f"{path}: not valid YAML{at}: {problem}") from None
    except Exception as err:  # PyYAML's constructors raise ValueError, IndexError, ... on a
        # value its (implied or explicit) tag cannot hold: `2001-13-45`, `!!int ''`
        raise UserError(f"{path}: not valid YAML: a value its type cannot hold "
                        f"({type(err).__name__}: {err})") from None
    if isinstance(raw, dict) and {"config", "provenance"} <= raw.keys():
        # a results folder's config.json (JSON is YAML): the config it ran is one key of it,
        # at one scale, with the scales gone
        name = raw["config"].get("name") if isinstance(raw["config"], dict) else None
        raise UserError(f"{path} is the record of a results folder, not a config; run the "
                        f"config it was made from ({name or 'its name'}, with --scale "
                        f"{raw.get('scale', 'SCALE')} and --out {path.parent.parent})")
    return parse_experiment(raw, str(path))


def bundled_configs() -> list[Path]:
    return sorted(CONFIG_DIR.glob("*.yaml"))


def bundled_names() -> str:
    """The bundled configs' names, as a message lists them."""
    return ", ".join(p.stem for p in bundled_configs())


def resolve_config_arg(name_or_path: str) -> Path:
    """Accept `configs/x.yaml` or just `x` (a bundled experiment's name)."""
    if not name_or_path.strip():  # Path("") is ".", which would be called a folder
        raise UserError(f"no config given (an empty name); give a config file or a bundled "
                        f"config: {bundled_names()}")
    path = Path(name_or_path)
    bundled = CONFIG_DIR / f"{name_or_path}.yaml"
    # `run logreg_mnist --out .` leaves a folder `logreg_mnist` here: a folder is no config,
    # so the bare name still means the bundled one the next time
    if path.is_dir() and len(path.parts) == 1 and bundled.is_file():
        return bundled
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    if len(path.parts) > 1:  # a path without its suffix (`configs/mlp`), not a bundled name
        return path.with_name(f"{path.name}.yaml")
    return bundled
