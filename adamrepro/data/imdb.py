"""IMDB movie reviews (Maas et al. 2011) as bag-of-words vectors, for Fig. 1 (right).

Reads the official layout DATA/aclImdb/{train,test}/{pos,neg}/ID_RATING.txt (downloaded and
extracted if missing). Labels: pos = 1 (rating >= 7), neg = 0 (rating <= 4); 25,000 reviews
per split, balanced: 12,500 in each label folder, which every load checks (a folder that lost
reviews, or gained one, is no longer the paper's data) unless the caller opts out (`verify:
false`, or `adamrepro run --unverified-data`, for a copy you trust; the runs then record
`data_verified: false`).

The dataset's own bag-of-words (`labeledBow.feat`, `idx:count`, idx into `imdb.vocab`) is
what the paper most likely fed its logistic regression, its features the words of idx < 10,000
(the specification's, PAPER.md). Dataset option `vocabulary` chooses where the counts come
from, always explicitly (never by which files are there: run ids derive from the config, and
the same config must always mean the same data):

- `labeledBow.feat`: read from the official archive's `aclImdb/{train,test}/labeledBow.feat`
  (which the copies this project is given lack: there, a one-line error names the archive
  and `imdb.vocab` as the fixes). A line a review, `rating idx:count ...`, idx into
  `imdb.vocab` from 0; the features are the counts of idx < `vocab_size`, the labels the
  ratings' (>= 7: 1, <= 4: 0); rows are the text path's order, negative reviews first, each
  label in the file's order (the official files list the positive ones first), so
  `train_size`/`test_size` draw the same rows. A malformed line, a rating of neither label,
  an idx beyond `imdb.vocab` or twice in a line is refused naming the file and line; each
  file must hold 25,000 lines, 12,500 of each label, unless `verify: false`. Parsing both
  files takes about 1.3 s on this project's 2-core CPU, so nothing is cached.

Or the counts are rebuilt from the review texts (the only way with the copies here), in one
of two ways:

- `imdb.vocab` (the bundled config's): the first `vocab_size` words of the dataset's own
  frequency-ordered `aclImdb/imdb.vocab`, each counted in a review by a tokenizer that makes
  that list's tokens (`tokenize_like_the_dataset`: lower case, `<br />` a space, every "'s"
  removed, words joined by inner apostrophes or hyphens, `!`, `?` and emoticons kept, tokens
  with a digit dropped). The authors' tokenizer is not published; this one makes every word
  of the list's first 10,000 from the training reviews, its 30 most frequent tokens are the
  list's first 30 in the list's order, and 9,941 of its 10,000 most frequent are the list's
  (whose counts took in more reviews than the 25,000 training ones).
- `ours` (the default, for configs written before the option): our tokenizer,
  1. lower-case the review and replace every `<br />` with a space;
  2. tokens are the matches of `[^\\W_]+(?:'[^\\W_]+)*`: runs of letters and digits (any
     script), joined by inner apostrophes, so `it's` and `don't` are one token while quotes
     ('like this') and all other punctuation are dropped;
  and the vocabulary is the `vocab_size` tokens with the most occurrences in the TRAINING
  reviews, ties broken alphabetically (test reviews never influence it). 9,570 of its 10,000
  words are the list's.

Features (`features`, ours, for every `vocabulary`): `counts` (default) is how often each
word occurs in a review, clipped at 255; `binary` is 1 where it occurs at all. Counts are the
default because they are what the dataset's own bag-of-words (`labeledBow.feat`,
`idx:count`), and hence most likely the paper, feeds the logistic regression; `binary` is the
common alternative for sentiment.

Tokenizing 50,000 reviews takes tens of seconds, so the text paths' per-review counts over the
FULL token list are built once and cached (compressed-sparse rows, uint8 counts) as
DATA/aclImdb/.adamrepro-cache/bow-<digest>.pt (`bow.imdb.vocab-<digest>.pt` for the dataset's
tokens); `vocab_size`, `vocabulary`'s list and `features` are applied when
loading, so changing them costs no re-tokenization. Features are returned dense as uint8 (N, V):
the runner keeps them on the device and the model casts each minibatch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from adamrepro.atomic import atomic_torch_save, remove_abandoned
from adamrepro.data.base import TensorDataset, load_sealed, sealed
from adamrepro.data.download import (
    MissingData,
    NotWritable,
    bar_console,
    check_not_inside,
    ensure_file,
    extract_tar,
    md5sum,
    url_from_env,
)
from adamrepro.errors import UserError, note
from adamrepro.options import Count, Frozen, options_model

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
ARCHIVE = "aclImdb_v1.tar.gz"
MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
SPLITS = ("train", "test")
LABELS = {"neg": 0, "pos": 1}
WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
# The tokens the dataset's own list, `imdb.vocab`, holds (vocabulary: imdb.vocab): words
# joined by inner apostrophes or hyphens (`sci-fi`, `don't`), `!` and `?`, and emoticons
# (`:)`, `;-)`, `(:`), with every "'s" removed first: the list has `oullivan` (from
# O'Sullivan) and no `it's` (every word of it whose last letters are 's' was cut); and no
# token with a digit (`10`, `80s`, `mst3k`: none of the list's first 10,000 has one; its only
# four are emoticons such as `8)`, rank 17,480 and below).
DATASET_WORD = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*|[!?]"
                          r"|[:;=][\-o]?[()\[\]dpo/\\|]|[()][\-o]?[:;=]")
VOCAB_FILE = "imdb.vocab"
# The dataset's own bag-of-words, one per split (vocabulary: labeledBow.feat): a line per
# review, `rating idx:count ...`, idx into imdb.vocab from 0. Only the official archive has
# them; the copies this project is given do not.
FEAT_FILE = "labeledBow.feat"
# One line, validated whole in C before any number is converted: a rating, then idx:count
# pairs, blanks around them. At most 18 digits, so that every number fits int64 (a longer
# one is a damaged line, not a count).
# A count is at least 1 (a word a review lacks has no pair): a 0 would read as the word
# present under `features: binary`.
FEAT_LINE = re.compile(r"[ \t]*(\d{1,18})((?:[ \t]+\d{1,18}:0*[1-9]\d{0,17})*)[ \t]*\r?",
                       re.ASCII)
OFFICIAL_VOCAB_WORDS = 89_527  # the words of the official archive's imdb.vocab
# Its MD5 (of ../shared/data's copy, the original file): a word list with two lines swapped
# swaps two feature columns and reads as well as the official one, so it is checked.
VOCAB_MD5 = "23c86a0533c0151b6f12fa52b106dcc2"
# Bump when anything that changes the cached counts changes (tokenizer, file order, format).
CACHE_VERSION = 3
MAX_COUNT = 255  # uint8 storage; no review comes close (the most repeated word is "the")
REVIEWS_PER_FOLDER = 12_500  # in each of train/pos, train/neg, test/pos, test/neg
# The official splits' sizes: a config asking for more is refused at load (config/checks.py).
SPLIT_SIZES = {"train_size": 2 * REVIEWS_PER_FOLDER, "test_size": 2 * REVIEWS_PER_FOLDER}
LINES_PER_FEAT = 2 * REVIEWS_PER_FOLDER  # a labeledBow.feat line per review of its split

# How many times the bag-of-words was built from the text in this process (tests read it to
# check that a second load comes from the cache).
bow_builds = 0


class Options(Frozen):
    name: str = "imdb"
    train_size: Count | None = None
    test_size: Count | None = None
    vocab_size: int = Field(10000, gt=0)
    # ours: the vocab_size tokens of our tokenizer most frequent in the training reviews;
    # imdb.vocab: the first vocab_size words of the dataset's own frequency-ordered list,
    # counted by a tokenizer that makes its tokens (`tokenize_like_the_dataset`)
    # labeledBow.feat: the dataset's own counts (its .feat files, idx < vocab_size), read,
    # not rebuilt; never chosen automatically where the files exist, as run ids derive from
    # the config and the same config must always mean the same data
    vocabulary: Literal["ours", "imdb.vocab", "labeledBow.feat"] = "ours"
    features: Literal["counts", "binary"] = "counts"
    # False reads a tree whose label folders do not hold the official 12,500 reviews each
    verify: bool = True


def options(values: dict, where: str) -> Options:
    return options_model(Options, values, where)


def feature_shape(opts: Options) -> tuple[int, ...]:
    return (opts.vocab_size,)


def outside_unit_range(opts: Options) -> str | None:
    """Why `load`'s features may leave [0, 1], with the fix, or None."""
    if opts.features == "counts":
        return "word counts run above 1; set dataset.features: binary"
    return None


def tokenize(text: str) -> list[str]:
    """Our tokenizer (see the module docstring): lower-case words, `<br />` as a space."""
    return WORD.findall(text.lower().replace("<br />", " "))


def tokenize_like_the_dataset(text: str) -> list[str]:
    """The tokens of `imdb.vocab` (`DATASET_WORD`): ours differ where the dataset's list
    has `!`, `?`, emoticons and hyphenated words, and lacks "'s". The authors' tokenizer is
    not published; this one makes every one of the list's first 10,000 words from the
    training reviews, and 9,941 of them are its own 10,000 most frequent (the list was
    counted over more reviews than the 25,000; tests/test_imdb.py)."""
    return [token for token in
            DATASET_WORD.findall(text.lower().replace("<br />", " ").replace("'s", ""))
            if not any(character.isdigit() for character in token)]


TOKENIZERS = {"ours": (tokenize, WORD), "imdb.vocab": (tokenize_like_the_dataset, DATASET_WORD)}


def url() -> str:
    """$ADAMREPRO_IMDB_URL (a full URL of the archive) replaces the official one when set."""
    return url_from_env("ADAMREPRO_IMDB_URL") or URL


def _lacking(root: Path) -> list[Path]:
    """The folders of the official layout that `root` lacks: a split where it is missing
    whole, else its label folders."""
    lacking = []
    for split in SPLITS:
        if not (root / split).is_dir():
            lacking.append(root / split)
            continue
        lacking += [root / split / label for label in LABELS if not (root / split / label).is_dir()]
    return lacking


def _incomplete(data_dir: Path, lacking: list[Path]) -> UserError:
    """The one line for an aclImdb/ that is there but partial (a folder deleted by hand, an
    extraction cut short). Nothing is downloaded for it: the archive is never unpacked over
    a folder that is there, so the download would not help."""
    root, archive = data_dir / "aclImdb", data_dir / ARCHIVE
    again = f"extract {archive}" if archive.is_file() else f"download and extract {ARCHIVE}"
    if not root.is_dir():
        return UserError(f"IMDB: {root} is a file, not the extracted archive's folder; delete "
                         f"it and run again to {again}")
    names = ", ".join(map(str, lacking))
    back = ", ".join(str(path.relative_to(data_dir)) for path in lacking)
    return UserError(f"IMDB: {names} {'is' if len(lacking) == 1 else 'are'} missing: the "
                     f"extracted archive is incomplete; put the official {back} back, or "
                     f"delete {root} and run again to {again} afresh")


def fetch(data_dir: Path) -> Path:
    """DATA/aclImdb with the train/test review folders, downloading the archive if needed."""
    data_dir = Path(data_dir)
    root = data_dir / "aclImdb"
    lacking = _lacking(root)
    if not lacking:
        return root
    check_not_inside(data_dir, ("aclImdb",), SPLITS, "IMDB")
    if root.exists():  # named, not downloaded over (it may hold our token cache alone)
        raise _incomplete(data_dir, lacking)
    hint = (f"; or put the extracted official archive (aclImdb/train/pos/*.txt, ...) in "
            f"{data_dir}")
    try:
        archive = ensure_file(data_dir, ARCHIVE, MD5, [url()], "IMDB")
    except MissingData as err:
        raise MissingData(f"{err}{hint}", {data_dir: [f"{ARCHIVE} (or its extracted aclImdb/)"]},
                          err.reason) from None
    except NotWritable:
        raise
    except UserError as err:
        raise UserError(f"{err}{hint}") from None
    extract_tar(archive, data_dir, "IMDB")
    lacking = _lacking(root)
    if lacking:
        raise _incomplete(data_dir, lacking)
    return root


def _review_name(name: str) -> tuple[int, int] | None:
    """(id, rating) of a review's file name `ID_RATING.txt`, else None. Plain string tests
    rather than a regular expression: every load reads all 50,000 names."""
    review_id, _, rating = name.removesuffix(".txt").partition("_")
    if (len(name) - len(review_id) - len(rating) == 5 and review_id.isascii()
            and review_id.isdigit() and rating.isascii() and rating.isdigit()):
        return int(review_id), int(rating)
    return None


def _review_files(root: Path) -> dict[str, list[tuple[int, int, int, str]]]:
    """Per split: (label, id, rating, path), neg before pos, by numeric id (a stable order).
    Paths are strings: every load lists all 50,000 files, and a Path for each took most of
    a second."""
    out = {}
    for split in SPLITS:
        rows = []
        for label_name, label in LABELS.items():
            folder = os.path.join(root, split, label_name)
            for name in os.listdir(folder):
                parsed = _review_name(name)
                if parsed is None:
                    continue  # not a review (e.g. an editor's backup file)
                review_id, rating = parsed
                if (label == 1 and rating < 7) or (label == 0 and rating > 4):
                    raise UserError(f"IMDB: {os.path.join(folder, name)} has rating {rating}, "
                                    f"impossible in {split}/{label_name}; replace aclImdb "
                                    f"with the official one")
                rows.append((label, review_id, rating, os.path.join(folder, name)))
            if not any(row[0] == label for row in rows):  # else one class alone, no error
                raise UserError(f"IMDB: no reviews (ID_RATING.txt) in {folder}; put the "
                                f"official aclImdb folder in {root.parent}")
        out[split] = sorted(rows, key=lambda row: row[:2])
    return out


def _miscounted(files: dict[str, list]) -> list[str]:
    """The label folders that do not hold the official REVIEWS_PER_FOLDER reviews, each with
    its count: `train/pos (1 review)`."""
    return [f"{split}/{name} ({held:,} review{'' if held == 1 else 's'})"
            for split, rows in files.items() for name, label in LABELS.items()
            if (held := sum(row[0] == label for row in rows)) != REVIEWS_PER_FOLDER]


def _vocab_differs(root: Path) -> bool:
    """Whether root/imdb.vocab is there and not the official file (absent, it is named by
    the load that reads it)."""
    path = root / VOCAB_FILE
    return path.is_file() and md5sum(path) != VOCAB_MD5


def unofficial(root: Path, opts: Options | None = None) -> str:
    """What makes a fetched aclImdb/ not the official data for a load with `opts`, in words
    ("" for none): its label folders of another count than REVIEWS_PER_FOLDER (a .feat load
    never reads them), its labeledBow.feat files of other counts than the official ones
    (where `opts` reads them; None: where they are there), an imdb.vocab with another MD5
    (unless `opts` is of our vocabulary, which never reads it). Reading them needs the
    opt-out (`verify: false`)."""
    vocabulary = None if opts is None else opts.vocabulary
    said = []
    wrong = _miscounted(_review_files(root)) if vocabulary != FEAT_FILE else []
    if wrong:
        said.append(f"{', '.join(wrong)} where the official folders hold "
                    f"{REVIEWS_PER_FOLDER:,} reviews each")
    if vocabulary in (None, FEAT_FILE):
        feats = _feat_miscounted({split: _feat_tally(path)
                                  for split, path in _feat_paths(root).items()
                                  if path.is_file() or vocabulary == FEAT_FILE})
        if feats:
            said.append(f"{', '.join(feats)} where the official files hold "
                        f"{LINES_PER_FEAT:,} lines, {REVIEWS_PER_FOLDER:,} of each label")
    if vocabulary != "ours" and _vocab_differs(root):
        said.append(f"the MD5 of {VOCAB_FILE} differs")
    return "; ".join(said)


def official(data_dir: Path, opts: Options | None = None) -> bool:
    """Whether DATA holds an aclImdb/ that passes the checks `verify` turns off for a load
    with `opts` (None: every check; `unofficial`). `--unverified-data` then leaves the
    config alone (its runs are a verified run's, with its run ids): a config of our
    vocabulary never reads imdb.vocab, and another list there must not give it other run
    ids."""
    root = Path(data_dir) / "aclImdb"
    try:
        return not _lacking(root) and not unofficial(root, opts)
    except (OSError, UserError):  # a .feat file missing, or the like: named by the load
        return False


def _check_counts(root: Path, files: dict[str, list]) -> None:
    wrong = _miscounted(files)
    if wrong:
        raise UserError(
            f"IMDB: {', '.join(wrong)} in {root}, where the official label folders hold "
            f"{REVIEWS_PER_FOLDER:,} reviews each; put the official aclImdb in its place "
            f"(deleted, it is downloaded and extracted again), or pass --unverified-data "
            f"(dataset option verify: false) for a copy you trust")


def _listing(root: Path, files: dict[str, list]) -> str:
    """A digest of every review file's name, folder (its label), size, modification time and
    change time, so that a review replaced, moved or edited since is read anew, never from
    a stale cache (50,000 stats: about 0.3 s). The change time is the one no tool sets back:
    `cp -p`, `rsync -a` and `tar x` restore an edited review's size-preserving modification
    time, but any write moves its change time."""
    listing = hashlib.sha1()
    for rows in files.values():
        for _, _, _, path in rows:
            try:
                stat = os.stat(path)
            except FileNotFoundError:  # listed, yet not there: a link to nothing (a copy
                # made of links, cp -s, whose target moved) was a FileNotFoundError traceback
                raise UserError(
                    f"IMDB: {path} is a link to {os.readlink(path)}, which does not exist; "
                    f"put the official review there, or replace aclImdb with the official one"
                    if os.path.islink(path) else
                    f"IMDB: {path} was removed while it was read; run again") from None
            listing.update(f"{os.path.relpath(path, root)}\0{stat.st_size}\0"
                           f"{stat.st_mtime_ns}\0{stat.st_ctime_ns}\n".encode())
    return listing.hexdigest()


def _cache_path(root: Path, files: dict[str, list], listing: str, vocabulary: str) -> Path:
    """The cache of these review files (`listing`, their `_listing`) by one tokenizer."""
    settings = {"version": CACHE_VERSION, "pattern": TOKENIZERS[vocabulary][1].pattern,
                "reviews": {split: len(rows) for split, rows in files.items()},
                "files": listing}
    if vocabulary != "ours":  # ours keeps its key (its cache is not rebuilt)
        # what the pattern does not say: bump the number when the rules change
        settings["tokenizer"] = f"{vocabulary}: 's removed, tokens with digits dropped (1)"
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return root / ".adamrepro-cache" / f"{_cache_stem(vocabulary)}{digest}.pt"


def _cache_stem(vocabulary: str) -> str:
    """The start of a cache's name: each tokenizer's own, ours as it always was (its cache
    and its key unchanged: not rebuilt), so that neither prunes the other's."""
    return "bow-" if vocabulary == "ours" else f"bow.{vocabulary}-"


def _build(files: dict[str, list], vocabulary: str = "ours") -> dict:
    """Tokenize every review: token counts over the full token list as compressed rows,
    with a progress bar (tens of seconds) on stderr where it is a terminal, but under
    `--quiet`."""
    from rich.progress import track

    global bow_builds
    bow_builds += 1
    token_id: dict[str, int] = {}
    train_total: Counter[int] = Counter()
    splits = {}
    for split, rows in files.items():
        indptr, indices, values = [0], [], []
        console, hidden = bar_console()
        for _, _, _, path in track(rows, f"tokenize {split}", transient=True, console=console,
                                   disable=hidden):
            try:
                text = Path(path).read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise UserError(f"IMDB: {path} is not UTF-8 text, as every review of the "
                                f"official aclImdb is; replace aclImdb with the official "
                                f"one") from None
            counts = Counter(TOKENIZERS[vocabulary][0](text))
            ids = [token_id.setdefault(token, len(token_id)) for token in counts]
            indices.extend(ids)
            values.extend(counts.values())
            indptr.append(len(indices))
            if split == "train":
                train_total.update(dict(zip(ids, counts.values(), strict=True)))
        splits[split] = {
            "indptr": torch.tensor(indptr, dtype=torch.int64),
            "indices": torch.tensor(indices, dtype=torch.int32),
            "values": torch.tensor(values, dtype=torch.int64).clamp_(max=MAX_COUNT)
            .to(torch.uint8),
            "labels": torch.tensor([row[0] for row in rows], dtype=torch.int64),
            "ids": torch.tensor([row[1] for row in rows], dtype=torch.int32),
            "ratings": torch.tensor([row[2] for row in rows], dtype=torch.uint8),
        }
    # Renumber tokens by training frequency, so the vocabulary of size V is simply ids < V.
    tokens = list(token_id)
    order = sorted(range(len(tokens)), key=lambda i: (-train_total[i], tokens[i]))
    new_id = torch.empty(len(tokens), dtype=torch.int32)
    new_id[torch.tensor(order, dtype=torch.int64)] = torch.arange(len(tokens), dtype=torch.int32)
    for split in splits.values():
        split["indices"] = new_id[split["indices"].long()]
    return {"tokens": [tokens[i] for i in order],
            "train_counts": [train_total[i] for i in order], "splits": splits}


def _to_file(bow: dict) -> dict:
    """The cache holds tensors only: the tokens as one UTF-8 buffer, newline-separated (no
    token holds whitespace). A list of 112,000 strings took the weights-only unpickler most
    of a second to read back; a buffer is read at once."""
    return {"tokens": torch.frombuffer(bytearray("\n".join(bow["tokens"]).encode("utf-8")),
                                       dtype=torch.uint8),
            "train_counts": torch.tensor(bow["train_counts"], dtype=torch.int64),
            "splits": bow["splits"]}


def _from_file(stored: dict) -> dict:
    return {"tokens": bytes(stored["tokens"].numpy()).decode("utf-8").split("\n"),
            "train_counts": stored["train_counts"].tolist(), "splits": stored["splits"]}


def _save_atomically(bow: dict, path: Path) -> None:
    try:
        atomic_torch_save(sealed(_to_file(bow)), path)
    except OSError as err:  # a read-only data folder still trains, it just re-tokenizes
        note(f"IMDB: could not cache the bag-of-words in {path} ({err}); it will be "
             f"rebuilt next time")


def _reviews_and_caches(data_dir: Path, vocabularies) -> tuple[dict[str, list], dict[str, Path]]:
    """The review files (fetched if missing, listed and stat'ed once) and where their
    bag-of-words is cached by each tokenizer of `vocabularies`."""
    root = fetch(data_dir)
    files = _review_files(root)
    listing = _listing(root, files)
    paths = {vocabulary: _cache_path(root, files, listing, vocabulary)
             for vocabulary in vocabularies}
    return files, paths


def _prune_stale(path: Path, vocabulary: str) -> None:
    """Remove the caches of `vocabulary` other than `path`: of review files since changed
    (or of an older adamrepro), which no load will read again, 38 MB each for the whole
    dataset. Only once `path` is read or written: a command refused for a review missing
    deleted the valid cache, which the review put back would have read again. The temporary
    files of writes a kill cut off go too, once no write can be in progress in them."""
    remove_abandoned(path.parent, f"{_cache_stem(vocabulary)}*.pt")
    for stale in path.parent.glob(f"{_cache_stem(vocabulary)}*.pt"):
        if stale != path:
            with contextlib.suppress(OSError):  # a read-only data folder keeps it
                stale.unlink()


def _build_and_cache(files: dict[str, list], path: Path, announce: bool = True,
                     vocabulary: str = "ours") -> dict:
    """Tokenize every review and cache the counts. Said first (`announce`), in a note, as it
    takes half a minute on a laptop: a run whose data was not fetched pays it too."""
    if announce:
        tokens = "" if vocabulary == "ours" else f" into {vocabulary}'s tokens"
        note(f"IMDB: tokenizing {sum(map(len, files.values())):,} reviews{tokens} once (about "
             f"half a minute); every run reads the cache in {path.parent}")
    bow = _build(files, vocabulary)
    _save_atomically(bow, path)
    _prune_stale(path, vocabulary)
    return bow


def bag_of_words(data_dir: Path, verify: bool = True, vocabulary: str = "ours") -> dict:
    """Token counts of every review (cached), by the tokenizer of `vocabulary`
    (`TOKENIZERS`): `tokens` ordered by training frequency, `train_counts` (their training
    occurrences), `splits[split]` with CSR `indptr`, `indices`, `values` (uint8 counts), and
    `labels`, `ids`, `ratings` per review. With `verify`, a label folder that does not hold
    the official number of reviews is a UserError."""
    files, paths = _reviews_and_caches(data_dir, (vocabulary,))
    path = paths[vocabulary]
    if verify:
        _check_counts(path.parent.parent, files)
    announce = True
    if path.exists():
        try:
            bow = _from_file(load_sealed(path))
        except Exception as err:  # noqa: BLE001 - any unreadable cache is simply rebuilt
            note(f"IMDB: ignoring the unreadable cache {path} ({err}); building it again")
            announce = False  # that note said so
        else:
            _prune_stale(path, vocabulary)
            return bow
    return _build_and_cache(files, path, announce, vocabulary)


def prepare(data_dir: Path) -> None:
    """Build the bag-of-words caches now where missing (`adamrepro fetch`), one per
    tokenizer (the bundled config reads the dataset's tokens, a config without `vocabulary`
    ours); a cache that is there is not read (a damaged one is rebuilt, with a note, by the
    run that reads it). Each build says so itself, in a note on stderr (stdout holds the
    command's product)."""
    files, paths = _reviews_and_caches(data_dir, TOKENIZERS)
    for vocabulary, path in paths.items():
        if not path.exists():
            _build_and_cache(files, path, vocabulary=vocabulary)


def dense(split: dict, vocab_size: int, binary: bool,
          column: torch.Tensor | None = None) -> torch.Tensor:
    """(N, vocab_size) uint8 features from one split's compressed rows: token i counts in
    column `column[i]` (-1: none), by default token i in column i, for i < vocab_size."""
    indptr, indices = split["indptr"], split["indices"].long()
    rows = torch.repeat_interleave(torch.arange(len(indptr) - 1), indptr.diff())
    if column is None:
        keep, columns = indices < vocab_size, indices
    else:
        columns = column[indices]
        keep = columns >= 0
    out = torch.zeros(len(indptr) - 1, vocab_size, dtype=torch.uint8)
    out[rows[keep], columns[keep]] = 1 if binary else split["values"][keep]
    return out


def dataset_vocabulary(root: Path, vocab_size: int, verify: bool = True) -> list[str]:
    """The first `vocab_size` words of the dataset's `imdb.vocab` (one per line, ordered by
    frequency, OFFICIAL_VOCAB_WORDS of them in the official archive), its MD5 checked
    first unless `verify` is off (the bytes checked are the bytes read)."""
    return _first_words(_vocabulary_words(root, verify, "imdb.vocab"), vocab_size,
                        root / VOCAB_FILE)


def _vocabulary_words(root: Path, verify: bool, reader: str) -> list[str]:
    """Every word of root/imdb.vocab, in its order (`dataset_vocabulary`); `reader` is the
    dataset option `vocabulary` that reads it, named where it is missing."""
    path = root / VOCAB_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"IMDB: {path} is missing (dataset option vocabulary: {reader} "
                        f"reads it); put the official aclImdb/{VOCAB_FILE} back, or use "
                        f"vocabulary: ours") from None
    except OSError as err:
        raise UserError(f"IMDB: {path} could not be read ({err}); put the official "
                        f"aclImdb/{VOCAB_FILE} back") from None
    found = hashlib.md5(raw).hexdigest()
    if verify and found != VOCAB_MD5:
        raise UserError(f"IMDB: {path} is not the official {VOCAB_FILE} (MD5 {found}, expected "
                        f"{VOCAB_MD5}); put the official aclImdb/{VOCAB_FILE} back, or pass "
                        f"--unverified-data (dataset option verify: false) for a copy you "
                        f"trust")
    try:
        # (newlines as read_text read them: \r\n and \r are line breaks too)
        words = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    except UnicodeDecodeError as err:
        raise UserError(f"IMDB: {path} could not be read as UTF-8 text ({err}); put the "
                        f"official aclImdb/{VOCAB_FILE} back") from None
    return [word for word in words if word]


def _first_words(words: list[str], vocab_size: int, path: Path) -> list[str]:
    if vocab_size > len(words):
        # the official list is far longer than any vocab_size: a short one is a damaged copy
        # more often than a config asking too much, so both fixes are named
        damaged = (f"put the official aclImdb/{VOCAB_FILE} ({OFFICIAL_VOCAB_WORDS:,} words) "
                   f"back, or " if len(words) < OFFICIAL_VOCAB_WORDS else "")
        raise UserError(f"IMDB: vocab_size {vocab_size} exceeds the {len(words):,} words of "
                        f"{path}; {damaged}choose at most {len(words)}")
    return words[:vocab_size]


def _columns(bow: dict, words: list[str]) -> torch.Tensor:
    """Token id -> its column: its place in `words`, -1 where it is none of them."""
    place = {word: i for i, word in enumerate(words)}
    return torch.tensor([place.get(token, -1) for token in bow["tokens"]], dtype=torch.int64)


def _feat_paths(root: Path) -> dict[str, Path]:
    return {split: root / split / FEAT_FILE for split in SPLITS}


def _label_of_rating(rating: int) -> int | None:
    """1 for a positive rating (7-10), 0 for a negative one (1-4), None for any other: the
    official data has no neutral reviews (5, 6)."""
    return 1 if 7 <= rating <= 10 else 0 if 1 <= rating <= 4 else None


def _feat_tally(path: Path) -> tuple[int, int, int]:
    """(lines, positive, negative) of a labeledBow.feat, from each line's first field alone
    (`unofficial`, which `adamrepro fetch` and --unverified-data ask: a tenth of a second,
    and a damaged line is `load`'s to name)."""
    lines = path.read_bytes().split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()  # what follows the last line's newline
    labels = Counter(_label_of_rating(int(first[0])) if (first := line.split(None, 1)[:1])
                     and first[0].isdigit() and len(first[0]) <= 18 else None
                     for line in lines)
    return len(lines), labels[1], labels[0]


def _feat_miscounted(tallies: dict[str, tuple[int, int, int]]) -> list[str]:
    """The splits whose labeledBow.feat is not the official LINES_PER_FEAT lines,
    REVIEWS_PER_FOLDER of each label: `train/labeledBow.feat (24,999 lines: 12,499 positive,
    12,500 negative)`."""
    return [f"{split}/{FEAT_FILE} ({lines:,} line{'' if lines == 1 else 's'}: {positive:,} "
            f"positive, {negative:,} negative)"
            for split, (lines, positive, negative) in tallies.items()
            if (lines, positive, negative) != (LINES_PER_FEAT, REVIEWS_PER_FOLDER,
                                               REVIEWS_PER_FOLDER)]


def _read_feat(path: Path, words: int) -> dict:
    """One split's labeledBow.feat as `dense` reads it: compressed rows `indptr`, `indices`
    (idx into imdb.vocab, of its `words` words), `values` (counts clipped at MAX_COUNT, uint8
    as the text path's), and `labels` and `ratings` per review. Rows are the text path's
    order: negative reviews first, then positive, each label in the file's order (the
    official files list the positive reviews first). A line that is not `rating idx:count
    ...`, a rating of neither label, an idx beyond imdb.vocab or twice in a line is a
    UserError naming the file and line: such a file is not the dataset's."""
    split = path.parent.name
    back = f"put the official aclImdb/{split}/{FEAT_FILE} back"
    try:
        # latin-1 maps every byte to one character: a byte that is not ASCII fails FEAT_LINE
        # and is named with its line, rather than as a decoding error at some offset
        text = path.read_bytes().decode("latin-1")
    except OSError as err:
        raise UserError(f"IMDB: {path} could not be read ({err}); {back}") from None
    lines = text.split("\n")  # not splitlines(): it also breaks at \x0c, \x1c, \x85, ...
    if lines[-1] == "":
        lines.pop()  # what follows the last line's newline
    labels, ratings, bodies = [], [], []
    for number, line in enumerate(lines, 1):
        match = FEAT_LINE.fullmatch(line)
        if match is None:
            shown = line if len(line) <= 60 else f"{line[:57]}..."
            raise UserError(f"IMDB: {path} line {number} is not `rating idx:count ...` "
                            f"({shown!r}); {back}")
        rating = int(match[1])
        label = _label_of_rating(rating)
        if label is None:
            raise UserError(f"IMDB: {path} line {number} has rating {rating}, neither "
                            f"negative (1-4) nor positive (7-10) as every review of the "
                            f"dataset is; {back}")
        labels.append(label)
        ratings.append(rating)
        bodies.append(match[2])
    for label, name in ((0, "negative"), (1, "positive")):
        if label not in labels:  # verify: false waives the counts, not an empty label
            raise UserError(f"IMDB: {path} holds no {name} review; {back}")
    order = sorted(range(len(lines)), key=labels.__getitem__)  # stable: file order kept
    lengths = torch.tensor([bodies[i].count(":") for i in order], dtype=torch.int64)
    # One conversion of every number in C: FEAT_LINE has checked each line's syntax, so
    # fromstring reads exactly the idx, count pairs (int() over 7 million strings took 1 s).
    pairs = torch.from_numpy(np.fromstring(" ".join(bodies[i] for i in order)
                                           .replace(":", " "), dtype=np.int64, sep=" "))
    indices, counts = pairs[0::2], pairs[1::2]
    rows = torch.repeat_interleave(torch.arange(len(order)), lengths)
    file_line = torch.tensor(order, dtype=torch.int64) + 1

    def first_line(bad: torch.Tensor) -> int:
        """The first line of the file holding one of the pairs `bad` marks."""
        return int(file_line[rows[bad]].min())

    if (beyond := indices >= words).any():
        number = first_line(beyond)
        idx = int(indices[beyond & (file_line[rows] == number)][0])
        raise UserError(f"IMDB: {path} line {number} has idx {idx}, beyond the {words:,} "
                        f"words of {path.parent.parent / VOCAB_FILE} (idx counts from 0); "
                        f"{back}, with its {VOCAB_FILE}")
    # An idx twice in a line would leave its column to whichever count `dense` wrote last.
    # The official lines list idx in increasing order, which rules it out in one pass; only
    # a file that does not is sorted (7 million pairs: a quarter of a second).
    in_a_row = rows[1:] == rows[:-1]
    keys = rows * words + indices  # unique unless a line names an idx twice
    ordered, where = (keys.sort() if (indices[1:][in_a_row] <= indices[:-1][in_a_row]).any()
                      else (keys[:0], keys[:0]))
    if (twice := ordered[1:] == ordered[:-1]).any():
        pair = where[1:][twice]
        number = first_line(pair)
        idx = int(indices[pair[file_line[rows[pair]] == number][0]])
        raise UserError(f"IMDB: {path} line {number} has idx {idx} twice; {back}")
    return {"indptr": torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)]),
            "indices": indices.to(torch.int32),
            "values": counts.clamp(max=MAX_COUNT).to(torch.uint8),
            "labels": torch.tensor([labels[i] for i in order], dtype=torch.int64),
            "ratings": torch.tensor([ratings[i] for i in order], dtype=torch.uint8)}


def _load_feat(opts: Options, data_dir: Path) -> TensorDataset:
    """vocabulary: labeledBow.feat: the features are the dataset's own counts, idx <
    vocab_size, read from its .feat files (about a second for both: no cache)."""
    root = fetch(data_dir)
    paths = _feat_paths(root)
    missing = [path for path in paths.values() if not path.is_file()]
    if missing:
        them = "them" if len(missing) > 1 else "it"
        raise UserError(
            f"IMDB: {', '.join(map(str, missing))} {'are' if len(missing) > 1 else 'is'} "
            f"missing (dataset option vocabulary: {FEAT_FILE} reads {them}); the official "
            f"{ARCHIVE} has {them}: put {them} in place from it, or use vocabulary: "
            f"imdb.vocab to rebuild the counts from the review texts")
    words = _vocabulary_words(root, opts.verify, FEAT_FILE)
    _first_words(words, opts.vocab_size, root / VOCAB_FILE)
    splits = {split: _read_feat(path, len(words)) for split, path in paths.items()}
    if opts.verify:
        wrong = _feat_miscounted({
            split: (len(rows["labels"]), int(rows["labels"].sum()),
                    int((rows["labels"] == 0).sum())) for split, rows in splits.items()})
        if wrong:
            raise UserError(
                f"IMDB: {', '.join(wrong)} in {root}, where the official files hold "
                f"{LINES_PER_FEAT:,} lines, {REVIEWS_PER_FOLDER:,} of each label; put the "
                f"official files in their place, or pass --unverified-data (dataset option "
                f"verify: false) for a copy you trust")
    binary = opts.features == "binary"
    train, test = splits["train"], splits["test"]
    data = TensorDataset.labelled(
        train_x=dense(train, opts.vocab_size, binary), train_y=train["labels"],
        test_x=dense(test, opts.vocab_size, binary), test_y=test["labels"], num_classes=2)
    return data.subset(opts.train_size, opts.test_size)


def load(opts: Options, data_dir: Path) -> TensorDataset:
    if opts.vocabulary == FEAT_FILE:
        return _load_feat(opts, Path(data_dir))
    bow = bag_of_words(data_dir, opts.verify, opts.vocabulary)
    column = None
    if opts.vocabulary == "imdb.vocab":
        column = _columns(bow, dataset_vocabulary(Path(data_dir) / "aclImdb", opts.vocab_size,
                                                  opts.verify))
    else:
        known = sum(1 for count in bow["train_counts"] if count > 0)
        if opts.vocab_size > known:
            raise UserError(f"IMDB: vocab_size {opts.vocab_size} exceeds the {known} "
                            f"distinct tokens of the training reviews; choose at most {known}")
    binary = opts.features == "binary"
    train, test = bow["splits"]["train"], bow["splits"]["test"]
    data = TensorDataset.labelled(
        train_x=dense(train, opts.vocab_size, binary, column),
        train_y=train["labels"],
        test_x=dense(test, opts.vocab_size, binary, column),
        test_y=test["labels"],
        num_classes=2,
    )
    return data.subset(opts.train_size, opts.test_size)
