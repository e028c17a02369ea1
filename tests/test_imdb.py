"""The IMDB bag-of-words on the real reviews, its cache, the binary logistic regression, and
the Fig. 1 (right) config end to end at smoke scale."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from cut_off import cut_off_write

from adamrepro.data import imdb
from adamrepro.errors import UserError
from adamrepro.models.logreg import LogReg
from adamrepro.models.logreg import options as logreg_options

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "logreg_imdb.yaml"


@pytest.fixture(scope="session")
def imdb_dir(data_dir) -> Path:
    """The data folder holding aclImdb/ (conftest.py's, where every command looks)."""
    return data_dir


@pytest.fixture(scope="session")
def bow(imdb_dir) -> dict:
    """The cached counts; on a fresh data folder this is the one full tokenization."""
    return imdb.bag_of_words(imdb_dir)


@pytest.fixture(scope="session")
def data(bow, imdb_dir):
    return imdb.load(imdb.Options(), imdb_dir)


def test_tokenizer_keeps_words_digits_and_inner_apostrophes():
    text = "It's <br /><br />GREAT, isn't it? 'Quoted' rock_n_roll 10/10 -- Café!"
    assert imdb.tokenize(text) == ["it's", "great", "isn't", "it", "quoted", "rock", "n",
                                   "roll", "10", "10", "café"]


def test_the_dataset_s_tokenizer_makes_the_tokens_of_its_list():
    """imdb.vocab holds `!`, `?`, emoticons and hyphenated words, and no "'s" (O'Sullivan is
    `oullivan` there, it's is `it`) nor digits: vocabulary: imdb.vocab counts them so."""
    text = "It's <br />GREAT, isn't it? Sci-Fi :) O'Sullivan's 10/10! (: rock_n_roll well;-)"
    assert imdb.tokenize_like_the_dataset(text) == [
        "it", "great", "isn't", "it", "?", "sci-fi", ":)", "oullivan", "!", "(:", "rock", "n",
        "roll", "well", ";-)"]  # 10/10: no token with a digit, as the list has none


def _review_text(bow: dict, imdb_dir: Path, row: int) -> str:
    """The text of the test review in row `row` of `bow`'s test split, read from its file."""
    split = bow["splits"]["test"]
    label = "pos" if split["labels"][row] == 1 else "neg"
    path = (imdb_dir / "aclImdb" / "test" / label /
            f"{int(split['ids'][row])}_{int(split['ratings'][row])}.txt")
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def dataset_words(imdb_dir) -> list[str]:
    return imdb.dataset_vocabulary(imdb_dir / "aclImdb", 10000)


def test_the_dataset_s_vocabulary_is_its_list_counted_as_its_tokens(bow, imdb_dir,
                                                                     dataset_words):
    """`vocabulary: imdb.vocab`: column i is the i-th word of the dataset's own list (the
    paper's features: labeledBow.feat's idx < 10000, files this copy lacks), counted in a
    review as the dataset's tokenizer would. Every word of the list occurs in the training
    reviews, and almost all of them are the 10,000 most frequent tokens by these counts
    (the list was counted over more reviews); a row is the review counted by hand."""
    data = imdb.load(imdb.Options(vocabulary="imdb.vocab"), imdb_dir)
    assert data.train_x.shape == (25000, 10000) and data.test_x.shape == (25000, 10000)
    assert dataset_words[:5] == ["the", "and", "a", "of", "to"]
    assert dataset_words[27] == "!" and "sci-fi" in dataset_words and ":)" in dataset_words
    assert (data.train_x.sum(0, dtype=torch.int64) > 0).all()  # no column of zeros
    counted = imdb.bag_of_words(imdb_dir, vocabulary="imdb.vocab")
    assert len(set(counted["tokens"][:10000]) & set(dataset_words)) >= 9900  # 9,941
    assert counted["tokens"][:30] == dataset_words[:30]  # the same words, in the same order
    # ours is another list: 9,570 of its 10,000 are the dataset's
    assert len(set(bow["tokens"][:10000]) & set(dataset_words)) < 9700
    row = 4321
    text = _review_text(counted, imdb_dir, row)
    counts = Counter(imdb.tokenize_like_the_dataset(text))
    expected = torch.tensor([min(counts[word], 255) for word in dataset_words],
                            dtype=torch.uint8)
    assert expected.sum() > 0 and torch.equal(data.test_x[row], expected)


def test_an_imdb_vocab_that_is_not_the_official_file_is_refused_unless_trusted(imdb_dir,
                                                                               tmp_path):
    """A copy of the real list with two lines swapped swaps two feature columns, and was
    read as the official one (runs recorded data_verified: true); its MD5 is checked, as the
    label folders' counts are, and the opt-out reads it."""
    lines = (imdb_dir / "aclImdb" / "imdb.vocab").read_bytes().split(b"\n")
    lines[0], lines[1] = lines[1], lines[0]
    root = tmp_path / "aclImdb"
    root.mkdir()
    (root / "imdb.vocab").write_bytes(b"\n".join(lines))
    with pytest.raises(UserError) as err:
        imdb.dataset_vocabulary(root, 10000)
    found = hashlib.md5(b"\n".join(lines)).hexdigest()
    assert str(err.value) == (
        f"IMDB: {root / 'imdb.vocab'} is not the official imdb.vocab (MD5 {found}, expected "
        f"23c86a0533c0151b6f12fa52b106dcc2); put the official aclImdb/imdb.vocab back, or "
        f"pass --unverified-data (dataset option verify: false) for a copy you trust")
    official = imdb.dataset_vocabulary(imdb_dir / "aclImdb", 10000)
    trusted = imdb.dataset_vocabulary(root, 10000, verify=False)
    assert trusted[:2] == official[1::-1] and trusted[2:] == official[2:]


def test_unverified_data_leaves_a_config_that_never_reads_imdb_vocab_alone(imdb_dir, tmp_path):
    """Another imdb.vocab beside the official reviews: `--unverified-data` turns the check
    off (other run ids) for a config that reads that list, and leaves one of our vocabulary,
    which never reads it, as it is (its run ids those of its committed results)."""
    from adamrepro.cli.params import without_data_check
    from adamrepro.config import load_experiment

    real, root = imdb_dir / "aclImdb", tmp_path / "aclImdb"
    root.mkdir()
    for split in ("train", "test"):
        (root / split).symlink_to(real / split, target_is_directory=True)
    lines = (real / "imdb.vocab").read_bytes().split(b"\n")
    lines[0], lines[1] = lines[1], lines[0]
    (root / "imdb.vocab").write_bytes(b"\n".join(lines))
    assert not imdb.official(tmp_path, imdb.Options(vocabulary="imdb.vocab"))
    assert imdb.official(tmp_path, imdb.Options(vocabulary="ours"))
    bundled = load_experiment(Path(__file__).parent.parent / "configs" / "logreg_imdb.yaml")
    assert bundled.dataset["vocabulary"] == "imdb.vocab"
    assert without_data_check(bundled, tmp_path).dataset["verify"] is False
    ours = bundled.model_copy(update={"dataset": {**bundled.dataset, "vocabulary": "ours"}})
    assert without_data_check(ours, tmp_path) == ours


def test_the_dataset_s_vocabulary_needs_its_file_and_enough_words(tmp_path):
    root = _tiny_imdb(tmp_path, {"train/pos/1_9.txt": "good good!", "train/neg/2_1.txt": "bad",
                                 "test/pos/3_8.txt": "good", "test/neg/4_2.txt": "bad?"})
    opts = imdb.Options(vocabulary="imdb.vocab", vocab_size=3, verify=False)
    with pytest.raises(UserError) as err:
        imdb.load(opts, root)
    assert str(err.value) == (
        f"IMDB: {root / 'aclImdb' / 'imdb.vocab'} is missing (dataset option vocabulary: "
        f"imdb.vocab reads it); put the official aclImdb/imdb.vocab back, or use "
        f"vocabulary: ours")
    (root / "aclImdb" / "imdb.vocab").write_text("good\n!\nbad\n", encoding="utf-8")
    data = imdb.load(opts, root)
    assert data.train_x.tolist() == [[0, 0, 1], [2, 1, 0]]  # neg first; good, !, bad
    with pytest.raises(UserError) as err:
        imdb.load(imdb.Options(vocabulary="imdb.vocab", vocab_size=4, verify=False), root)
    # a list shorter than the official one is named as the likelier mistake: a damaged copy
    assert str(err.value) == (
        f"IMDB: vocab_size 4 exceeds the 3 words of {root / 'aclImdb' / 'imdb.vocab'}; put "
        f"the official aclImdb/imdb.vocab (89,527 words) back, or choose at most 3")
    # each tokenizer keeps its own cache, and neither prunes the other's
    imdb.load(imdb.Options(vocab_size=2, verify=False), root)
    builds = imdb.bow_builds
    imdb.load(opts, root)
    assert imdb.bow_builds == builds  # read back
    cache = root / "aclImdb" / ".adamrepro-cache"
    assert sorted(p.name.split("-")[0] for p in cache.glob("bow*.pt")) == ["bow",
                                                                         "bow.imdb.vocab"]


def test_shapes_labels_and_sparsity(data):
    for x, y in ((data.train_x, data.train_y), (data.test_x, data.test_y)):
        assert x.shape == (25000, 10000) and x.dtype == torch.uint8
        assert torch.bincount(y).tolist() == [12500, 12500]
        # A review of ~230 words uses ~130 distinct vocabulary words: ~1.3% of 10,000.
        density = torch.count_nonzero(x).item() / x.numel()
        assert 0.005 < density < 0.03
        assert x.any(1).all()  # no empty review
    assert data.num_classes == 2


def test_vocabulary_is_the_most_frequent_training_tokens(bow):
    assert bow["tokens"][:5] == ["the", "and", "a", "of", "to"]
    counts = torch.tensor(bow["train_counts"][:10001])
    assert (counts[:-1] >= counts[1:]).all()  # ordered by training frequency
    assert counts[9999] > 0
    assert len(set(bow["tokens"])) == len(bow["tokens"])
    # The 10,000th token ties with some 200 others (31 training occurrences each): the order
    # within a tie decides which of them are features, so it is fixed, alphabetical.
    assert counts[9999] == counts[10000]
    tokens, every = bow["tokens"], bow["train_counts"]
    assert all(tokens[i] < tokens[i + 1] for i in range(len(tokens) - 1)
               if every[i] == every[i + 1])


def test_a_row_is_the_review_counted_by_hand(bow, data, imdb_dir):
    row = 12345
    counts = Counter(imdb.tokenize(_review_text(bow, imdb_dir, row)))
    index = {token: i for i, token in enumerate(bow["tokens"][:10000])}
    expected = torch.zeros(10000, dtype=torch.uint8)
    for token, count in counts.items():
        if token in index:
            expected[index[token]] = min(count, 255)
    assert torch.equal(data.test_x[row], expected)
    binary = imdb.load(imdb.Options(features="binary", vocab_size=100, test_size=None),
                       imdb_dir)
    assert torch.equal(binary.test_x[row], (expected[:100] > 0).to(torch.uint8))


def test_second_load_reuses_the_cache(bow, imdb_dir):
    caches = list((imdb_dir / "aclImdb" / ".adamrepro-cache").glob("bow-*.pt"))
    assert len(caches) == 1
    mtime, builds = caches[0].stat().st_mtime_ns, imdb.bow_builds
    again = imdb.bag_of_words(imdb_dir)
    assert imdb.bow_builds == builds  # not tokenized again
    assert caches[0].stat().st_mtime_ns == mtime  # not rewritten
    assert again["tokens"][:100] == bow["tokens"][:100]


def _tiny_imdb(root: Path, reviews: dict[str, str]) -> Path:
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            (root / "aclImdb" / split / label).mkdir(parents=True)
    for name, text in reviews.items():
        (root / "aclImdb" / name).write_text(text, encoding="utf-8")
    return root


def test_only_review_names_are_read_and_the_cache_gives_back_what_was_built(tmp_path):
    root = _tiny_imdb(tmp_path, {
        "train/pos/3_9.txt": "Great great film", "train/neg/12_1.txt": "Bad, café",
        "test/pos/7_10.txt": "great", "test/neg/2_4.txt": "bad film",
        # not reviews: an editor's backup, notes, a name with no rating
        "train/pos/3_9.txt~": "ignored", "train/pos/notes.md": "ignored",
        "train/neg/5.txt": "ignored"})
    builds = imdb.bow_builds
    built = imdb.bag_of_words(root, verify=False)
    assert imdb.bow_builds == builds + 1
    assert built["tokens"][:2] == ["great", "bad"] and built["train_counts"][:2] == [2, 1]
    assert built["splits"]["train"]["ids"].tolist() == [12, 3]  # neg before pos
    assert built["splits"]["test"]["ratings"].tolist() == [4, 10]
    cached = imdb.bag_of_words(root, verify=False)
    assert imdb.bow_builds == builds + 1
    assert cached["tokens"] == built["tokens"] and "café" in cached["tokens"]
    assert cached["train_counts"] == built["train_counts"]
    for split in ("train", "test"):
        for key, tensor in built["splits"][split].items():
            assert torch.equal(cached["splits"][split][key], tensor), (split, key)


def test_counts_are_clipped_at_what_uint8_holds(tmp_path):
    """Counts are stored as uint8: a word said 300 times in a review counts the largest uint8,
    255 (MAX_COUNT), not a wrapped-around 300 mod 256 nor a lower clip; 200 times stays 200,
    in the cache and in the features."""
    largest = torch.iinfo(torch.uint8).max
    assert imdb.MAX_COUNT == largest
    root = _tiny_imdb(tmp_path, {"train/pos/3_9.txt": "wow " * 300 + "good " * 200,
                                 "train/neg/1_1.txt": "bad", "test/pos/2_8.txt": "wow " * 300,
                                 "test/neg/4_3.txt": "bad"})
    bow = imdb.bag_of_words(root, verify=False)
    assert bow["tokens"][:3] == ["wow", "good", "bad"]
    assert bow["train_counts"][:2] == [300, 200]  # the vocabulary's counts are not clipped
    train = bow["splits"]["train"]
    assert train["values"].dtype == torch.uint8
    pos = int(train["indptr"][1])  # row 0 is the neg review, row 1 the pos one
    assert train["indices"][pos:].tolist() == [0, 1]
    assert train["values"][pos:].tolist() == [largest, 200]
    data = imdb.load(imdb.Options(vocab_size=3, verify=False), root)
    assert data.train_x.tolist() == [[0, 0, 1], [largest, 200, 0]]
    assert data.test_x.tolist() == [[0, 0, 1], [largest, 0, 0]]


def test_fetch_builds_the_cache_once_and_says_so(tmp_path, cli):
    """`adamrepro fetch` (which `make test` runs first) tokenizes now, not a run later, and
    says so in a note on stderr: stdout holds the command's product alone (the note and the
    bar's line breaks went there)."""
    root = _tiny_imdb(tmp_path, {"train/pos/3_9.txt": "good", "train/neg/1_1.txt": "bad",
                                 "test/pos/2_8.txt": "good", "test/neg/4_3.txt": "bad"})
    # four reviews are not the official 12,500 a folder: fetch says so, and builds the cache
    line = (f"{'imdb':10s} {root / 'aclImdb'} (not the official data: train/neg (1 review), "
            f"train/pos (1 review), test/neg (1 review), test/pos (1 review) where the "
            f"official folders hold 12,500 reviews each; runs read it only with "
            f"--unverified-data, for a copy you trust)\n")
    code, out, err = cli("fetch", "imdb", "--data-dir", root)
    assert code == 0 and out == line, out
    cache = root / "aclImdb" / ".adamrepro-cache"
    assert err == (f"adamrepro: note: IMDB: tokenizing 4 reviews once (about half a minute); "
                   f"every run reads the cache in {cache}\n"
                   f"adamrepro: note: IMDB: tokenizing 4 reviews into imdb.vocab's tokens "
                   f"once (about half a minute); every run reads the cache in {cache}\n")
    assert sorted(p.name.split("-")[0] for p in cache.glob("bow*.pt")) == ["bow",
                                                                         "bow.imdb.vocab"]
    builds = imdb.bow_builds
    code, out, err = cli("fetch", "imdb", "--data-dir", root)
    assert code == 0 and out == line and err == "", (out, err)
    for vocabulary in ("ours", "imdb.vocab"):  # what a config of either reads
        imdb.bag_of_words(root, verify=False, vocabulary=vocabulary)
    assert imdb.bow_builds == builds  # the runs read what fetch built


def test_a_run_that_tokenizes_says_so_on_stderr(tmp_path, capsys):
    """A run on data that `fetch` did not prepare tokenizes for half a minute too: it said
    nothing while it did."""
    root = _tiny_imdb(tmp_path, {"train/pos/3_9.txt": "good", "train/neg/1_1.txt": "bad",
                                 "test/pos/2_8.txt": "good", "test/neg/4_3.txt": "bad"})
    imdb.load(imdb.Options(vocab_size=2, verify=False), root)
    said = capsys.readouterr()
    assert said.out == "" and said.err.startswith(
        "adamrepro: note: IMDB: tokenizing 4 reviews once") and said.err.count("\n") == 1
    imdb.load(imdb.Options(vocab_size=2, verify=False), root)
    assert capsys.readouterr().err == ""  # read from the cache: nothing to say


def _on_a_terminal(*args: str) -> tuple[int, str, bytes]:
    """`adamrepro ARGS` with stderr on a terminal (a pseudo-terminal) and stdout to a pipe:
    its exit code, stdout, and what the terminal got."""
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    process = subprocess.Popen([sys.executable, "-m", "adamrepro", *args],
                               stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    terminal = b""
    while True:  # read as it comes, so that a full terminal buffer cannot block the command
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        terminal += chunk
    os.close(leader)
    with process.stdout:
        out = process.stdout.read().decode()
    return process.wait(timeout=300), out, terminal


FOUR_REVIEWS = {"train/pos/3_9.txt": "good", "train/neg/1_1.txt": "bad",
                "test/pos/2_8.txt": "good", "test/neg/4_3.txt": "bad"}


def test_the_tokenizing_bar_is_drawn_on_a_terminal_stderr(tmp_path):
    """`adamrepro fetch imdb` with stderr on a terminal: the note and the progress bar go to
    the terminal, the pipe gets the command's line alone (the bar was drawn on stdout, so
    not at all where stdout was no terminal)."""
    root = _tiny_imdb(tmp_path, FOUR_REVIEWS)
    code, out, terminal = _on_a_terminal("fetch", "imdb", "--data-dir", str(root))
    assert code == 0, terminal
    assert out.startswith(f"{'imdb':10s} {root / 'aclImdb'} (not the official data: ")
    assert out.count("\n") == 1
    assert b"adamrepro: note: IMDB: tokenizing 4 reviews once" in terminal
    assert b"tokenize train" in terminal and b"tokenize test" in terminal, terminal


def test_run_quiet_draws_no_tokenizing_bar_yet_says_it_tokenizes(tmp_path):
    """`run --quiet` promises no progress bars: IMDB's tokenizing bar, drawn by a run whose
    data `fetch` did not prepare, was one (the training's were hidden). The note stays."""
    root = _tiny_imdb(tmp_path, FOUR_REVIEWS)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny_imdb", "title": "four reviews",
        "dataset": {"name": "imdb", "vocab_size": 2, "verify": False},
        "model": {"name": "logreg", "binary": True}, "training": {"batch_size": 2, "epochs": 1},
        "methods": {"adam": {"optimizer": "adam", "grid": {"lr": [1.0e-3]}}},
        "scales": {"smoke": {"epochs": 1}}}))
    code, out, terminal = _on_a_terminal("run", str(config), "--scale", "smoke", "--quiet",
                                         "--data-dir", str(root), "--out",
                                         str(tmp_path / "out"))
    assert code == 0, terminal
    assert b"adamrepro: note: IMDB: tokenizing 4 reviews once" in terminal
    assert b"tokenize" not in terminal.split(b"tokenizing 4 reviews once", 1)[1], terminal
    assert b"tiny_imdb (" not in terminal and "trained 1 run" in out
    # without --quiet, the training's bar is drawn on the terminal (on stderr)
    code, out, terminal = _on_a_terminal("run", str(config), "--scale", "smoke", "--data-dir",
                                         str(root), "--out", str(tmp_path / "again"))
    assert code == 0 and b"tiny_imdb (1 group)" in terminal, terminal
    assert out.startswith("trained 1 run")


@pytest.mark.parametrize("name, rating", [
    ("train/pos/3_2.txt", 2),
    # the dataset has no neutral review (5, 6): one in a label folder is not of that label
    ("train/pos/3_6.txt", 6),
    ("test/neg/5_5.txt", 5),
])
def test_a_rating_impossible_for_its_label_is_a_user_error(name, rating, tmp_path):
    root = _tiny_imdb(tmp_path, {**FOUR_REVIEWS, name: "a"})
    folder, review = name.rsplit("/", 1)
    with pytest.raises(UserError, match=f"{re.escape(review)} has rating {rating}, "
                                        f"impossible in {folder};"):
        imdb.bag_of_words(root, verify=False)


def test_a_label_folder_without_reviews_or_a_review_not_utf8_is_a_user_error(tmp_path):
    """An empty train/pos trained on one class without a word; a review that is not UTF-8
    gave a UnicodeDecodeError traceback."""
    root = _tiny_imdb(tmp_path / "empty", {"train/neg/1_1.txt": "bad", "test/pos/2_8.txt": "c",
                                           "test/neg/4_3.txt": "d"})
    with pytest.raises(UserError, match=r"no reviews \(ID_RATING.txt\) in .*train/pos"):
        imdb.bag_of_words(root, verify=False)
    root = _tiny_imdb(tmp_path / "latin1", {"train/pos/3_9.txt": "a", "train/neg/1_1.txt": "b",
                                            "test/pos/2_8.txt": "c", "test/neg/4_3.txt": "d"})
    (root / "aclImdb" / "train" / "pos" / "3_9.txt").write_bytes(b"good \xff\xfe bad")
    with pytest.raises(UserError, match=r"3_9\.txt is not UTF-8 text"):
        imdb.bag_of_words(root, verify=False)


def test_a_review_that_links_to_nothing_is_one_line_naming_it(cli, tmp_path):
    """A copy made of links (cp -s) whose target moved: a review listed, yet not there, was a
    FileNotFoundError traceback out of `fetch` and `run`."""
    root = _tiny_imdb(tmp_path, FOUR_REVIEWS)
    review = root / "aclImdb" / "test" / "neg" / "4_3.txt"
    review.unlink()
    review.symlink_to(tmp_path / "moved" / "4_3.txt")
    code, out, err = cli("fetch", "imdb", "--data-dir", root)
    assert code == 2 and out == "", (out, err)
    assert err == (f"adamrepro: error: IMDB: {review} is a link to {tmp_path / 'moved' / '4_3.txt'}"
                   f", which does not exist; put the official review there, or replace aclImdb "
                   f"with the official one\n")
    assert not (root / "aclImdb" / ".adamrepro-cache").exists()


def test_a_review_changed_since_the_cache_was_built_is_read_anew(tmp_path):
    """The cache is keyed by every review file's name, folder, size and time: a review
    replaced, or moved to the other label, is not read back stale from it."""
    root = _tiny_imdb(tmp_path, {"train/pos/3_9.txt": "good", "train/neg/1_1.txt": "bad",
                                 "test/pos/2_8.txt": "good", "test/neg/4_3.txt": "bad"})
    imdb.bag_of_words(root, verify=False)
    review = root / "aclImdb" / "train" / "neg" / "1_1.txt"
    review.write_text("awful awful film")
    built = imdb.bag_of_words(root, verify=False)
    assert "awful" in built["tokens"] and "film" in built["tokens"]
    (root / "aclImdb" / "train" / "pos" / "5_8.txt").write_text("fine")
    review.rename(root / "aclImdb" / "train" / "neg" / "9_2.txt")
    moved = imdb.bag_of_words(root, verify=False)
    assert moved["splits"]["train"]["ids"].tolist() == [9, 3, 5]
    assert moved["splits"]["train"]["labels"].tolist() == [0, 1, 1]
    # the caches of the review files as they were are gone: none would be read again
    assert len(list((root / "aclImdb" / ".adamrepro-cache").glob("bow-*.pt"))) == 1
    # an edit of the same size whose modification time is put back (`cp -p`, `rsync -a`)
    kept = root / "aclImdb" / "train" / "pos" / "5_8.txt"
    before = kept.stat()
    kept.write_text("nice")
    os.utime(kept, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert "nice" in imdb.bag_of_words(root, verify=False)["tokens"]


def test_a_command_refused_for_a_stray_review_keeps_the_cache(tmp_path):
    """A review file copied in by mistake changes the cache's key; the command is refused
    for it (the official counts), and the cache of the reviews as they were stays: it was
    deleted as stale before the refusal, and with the stray file removed the next command
    paid the tokenizing again (half a minute)."""
    root = _tiny_imdb(tmp_path, FOUR_REVIEWS)
    imdb.bag_of_words(root, verify=False)
    [cache] = (root / "aclImdb" / ".adamrepro-cache").glob("bow-*.pt")
    stray = root / "aclImdb" / "train" / "pos" / "5_7.txt"
    stray.write_text("fine")
    with pytest.raises(UserError, match="where the official label folders hold 12,500"):
        imdb.bag_of_words(root)
    assert cache.exists()
    stray.unlink()
    builds = imdb.bow_builds
    imdb.bag_of_words(root, verify=False)
    assert imdb.bow_builds == builds  # read back, not built again


def test_a_cache_write_a_kill_cut_off_leaves_no_temporary_file(tmp_path):
    """A kill while the bag-of-words was written (38 MB for the whole dataset) left its
    temporary file beside the cache for good, hidden: the next command that reads or writes
    the cache removes one that no write has touched for ABANDONED_SECONDS, and leaves a
    younger one, which may be another command's write in progress."""
    root = _tiny_imdb(tmp_path, FOUR_REVIEWS)
    imdb.bag_of_words(root, verify=False)
    [cache] = (root / "aclImdb" / ".adamrepro-cache").glob("bow-*.pt")
    abandoned = cut_off_write(cache)
    writing = cut_off_write(cache, abandoned=False)
    imdb.bag_of_words(root, verify=False)
    assert not abandoned.exists() and writing.exists() and cache.exists()


def test_a_file_in_the_caches_place_that_no_run_wrote_is_one_short_note(tmp_path, capsys):
    """A pickle of another program where the cache is: never unpickled beyond what
    torch.load(weights_only=True) allows, and said in one short line (torch's paragraph,
    which suggests weights_only=False, and its protocol warning were the note)."""
    import pickle

    root = _tiny_imdb(tmp_path, FOUR_REVIEWS)
    built = imdb.bag_of_words(root, verify=False)
    [cache] = (root / "aclImdb" / ".adamrepro-cache").glob("bow-*.pt")
    cache.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    capsys.readouterr()
    again = imdb.bag_of_words(root, verify=False)
    assert capsys.readouterr().err == (
        f"adamrepro: note: IMDB: ignoring the unreadable cache {cache} (not a cache adamrepro "
        f"wrote: UnpicklingError); building it again\n")
    assert again["tokens"] == built["tokens"]


def test_a_cache_whose_contents_were_damaged_is_rebuilt(tmp_path, capsys):
    """Bytes damaged inside a tensor of the cache load without a word from torch: the cache
    carries its contents' SHA-256, and one that does not match is built again."""
    root = _tiny_imdb(tmp_path, {"train/pos/3_9.txt": "good good", "train/neg/1_1.txt": "bad",
                                 "test/pos/2_8.txt": "good", "test/neg/4_3.txt": "bad"})
    built = imdb.bag_of_words(root, verify=False)
    capsys.readouterr()  # the first build's note
    [cache] = (root / "aclImdb" / ".adamrepro-cache").glob("bow-*.pt")
    stored = torch.load(cache, weights_only=True)
    stored["splits"]["train"]["values"][0] = 200  # a count, as a flipped byte would change it
    torch.save(stored, cache)
    builds = imdb.bow_builds
    again = imdb.bag_of_words(root, verify=False)
    said = capsys.readouterr().err
    assert said.startswith("adamrepro: note: IMDB: ignoring the unreadable cache ") and (
        "contents do not match their checksum" in said and said.count("\n") == 1), said
    assert imdb.bow_builds == builds + 1
    assert torch.equal(again["splits"]["train"]["values"], built["splits"]["train"]["values"])


def test_vocab_size_beyond_the_training_tokens_is_a_user_error(bow, imdb_dir):
    """The bound is the tokens the training reviews hold: the test reviews' own tokens (no
    training occurrence, the end of the list) are no vocabulary, and a vocab_size reaching
    them would give features never trained on."""
    distinct = bow["splits"]["train"]["indices"].unique().numel()
    assert distinct < len(bow["tokens"])
    with pytest.raises(UserError) as err:
        imdb.load(imdb.Options(vocab_size=10**7), imdb_dir)
    assert str(err.value) == (f"IMDB: vocab_size {10**7} exceeds the {distinct} distinct "
                              f"tokens of the training reviews; choose at most {distinct}")


@pytest.mark.parametrize("removed, named", [
    (["test/neg"], "{root}/test/neg is missing"),
    (["train", "test/pos"], "{root}/train, {root}/test/pos are missing"),
])
def test_a_partial_extracted_folder_names_what_it_lacks(removed, named, monkeypatch, tmp_path):
    """A label folder deleted from aclImdb/ (which still holds the token cache) was reported
    as a missing download of the archive; a download would not help either, as the archive
    is never unpacked over a folder that is there."""
    monkeypatch.setenv("ADAMREPRO_IMDB_URL", "http://127.0.0.1:9/aclImdb_v1.tar.gz")
    root = _tiny_imdb(tmp_path, {"train/pos/3_9.txt": "good", "train/neg/1_1.txt": "bad",
                                 "test/pos/2_8.txt": "good", "test/neg/4_3.txt": "bad"})
    imdb.bag_of_words(root, verify=False)  # the cache: aclImdb/ is there whatever is deleted
    for folder in removed:
        shutil.rmtree(root / "aclImdb" / folder)
    back = ", ".join(f"aclImdb/{folder}" for folder in removed)
    with pytest.raises(UserError) as err:
        imdb.bag_of_words(root, verify=False)
    assert str(err.value) == (
        f"IMDB: {named.format(root=root / 'aclImdb')}: the extracted archive is incomplete; "
        f"put the official {back} back, or delete {root / 'aclImdb'} and run again to "
        f"download and extract aclImdb_v1.tar.gz afresh")
    archive = root / imdb.ARCHIVE
    archive.write_bytes(b"stands for the archive")  # there: it would be extracted
    with pytest.raises(UserError, match=f"run again to extract {re.escape(str(archive))} "
                                        f"afresh$"):
        imdb.fetch(root)


def test_a_real_copy_without_a_label_folder_is_one_line_naming_it(cli, data_dir, monkeypatch,
                                                                   tmp_path):
    """What the audit ran: the real reviews, test/neg missing, and `run` said the archive
    "is missing and could not be downloaded"."""
    monkeypatch.setenv("ADAMREPRO_IMDB_URL", "http://127.0.0.1:9/aclImdb_v1.tar.gz")
    copy = tmp_path / "data" / "aclImdb"
    (copy / "test").mkdir(parents=True)
    (copy / "train").symlink_to(data_dir / "aclImdb" / "train")
    (copy / "test" / "pos").symlink_to(data_dir / "aclImdb" / "test" / "pos")
    code, out, err = cli("run", CONFIG, "--scale", "smoke", "--out", tmp_path / "out",
                         "--quiet", "--data-dir", tmp_path / "data")
    assert code == 2 and out == "", err
    assert err == (f"adamrepro: error: IMDB: {copy / 'test' / 'neg'} is missing: the "
                   f"extracted archive is incomplete; put the official aclImdb/test/neg back, "
                   f"or delete {copy} and run again to download and extract "
                   f"aclImdb_v1.tar.gz afresh\n")


def test_offline_says_what_is_missing_and_where(monkeypatch, tmp_path):
    monkeypatch.setenv("ADAMREPRO_IMDB_URL", "http://127.0.0.1:9/aclImdb_v1.tar.gz")
    with pytest.raises(UserError, match=r"missing.*put the official aclImdb_v1.tar.gz in "):
        imdb.fetch(tmp_path / "empty")
    assert not (tmp_path / "empty" / "aclImdb").exists()


def test_binary_logreg_is_bce_with_one_output():
    opts = logreg_options({"binary": True, "init": "normal", "init_scale": 1.0}, "model")
    model = LogReg(opts, (7,), 2, seeds=[0, 1]).double()
    x = torch.randint(0, 4, (2, 5, 7), dtype=torch.uint8)
    y = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0]])
    out = model(x, train=False)
    assert out.shape == (2, 5, 1)
    logits = out.squeeze(-1)
    expected = -(y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)).mean(1)
    torch.testing.assert_close(model.loss(out, y), expected)
    assert model.correct(out, y).tolist() == ((logits > 0).long() == y).sum(1).tolist()


def test_binary_needs_two_classes_and_multiclass_is_unchanged():
    with pytest.raises(UserError, match="two-class"):
        LogReg(logreg_options({"binary": True}, "model"), (7,), 10, seeds=[0])
    model = LogReg(logreg_options({}, "model"), (7,), 10, seeds=[0])
    out = model(torch.rand(1, 4, 7), train=False)
    y = torch.tensor([[0, 3, 9, 2]])
    assert out.shape == (1, 4, 10)
    torch.testing.assert_close(model.loss(out, y), F.cross_entropy(out[0], y[0]).view(1))


def test_shared_inputs_take_one_matmul_with_the_same_result_and_gradient():
    opts = logreg_options({"binary": True, "init": "normal", "init_scale": 1.0}, "model")
    model = LogReg(opts, (50,), 2, seeds=[0, 1, 2]).double()
    x = torch.randint(0, 4, (1, 8, 50), dtype=torch.uint8)
    y = torch.randint(0, 2, (3, 8))
    results = []
    for batch in (x.expand(3, 8, 50), x.expand(3, 8, 50).contiguous()):  # shared, then copies
        model.zero_grad()
        out = model(batch, train=False)
        model.loss(out, y).sum().backward()
        results.append((out, model.linear.weight.grad.clone(), model.linear.bias.grad.clone()))
    # float64, two summation orders of 50 terms: agreement to ~1e-15 relative.
    for shared, copied in zip(*results, strict=True):
        torch.testing.assert_close(shared, copied, rtol=1e-12, atol=1e-12)


def test_config_runs_at_smoke_scale(cli, bow, imdb_dir, tmp_path):
    code, _, err = cli("run", CONFIG, "--scale", "smoke", "--out", tmp_path, "--quiet",
                       "--data-dir", imdb_dir)
    assert code == 0, err
    best = pd.read_csv(tmp_path / "logreg_imdb" / "best.csv")
    methods = set(yaml.safe_load(CONFIG.read_text())["methods"])
    assert methods == {"adagrad+dropout", "adagrad_constant+dropout", "rmsprop+dropout",
                       "sgd_nesterov+dropout", "adam+dropout"}
    assert set(best["method"]) == methods
    assert not best["diverged"].any()


def test_a_label_folder_that_lost_or_gained_a_review_is_refused_unless_trusted(
        data_dir, tmp_path, cli):
    """Every review of the real data, linked; train/pos loses one and test/neg gains a copy:
    a run trained on such a tree and recorded it as verified data. It is one line, exit 2,
    naming both folders; --unverified-data reads it, and its runs say so."""
    official = data_dir / "aclImdb"
    copy = tmp_path / "data" / "aclImdb"
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            (copy / split / label).mkdir(parents=True)
            for review in os.scandir(official / split / label):
                (copy / split / label / review.name).symlink_to(review.path)
    (copy / "imdb.vocab").symlink_to(official / "imdb.vocab")  # the config's word list
    lost = sorted((copy / "train" / "pos").iterdir())[0]
    lost.unlink()
    extra = next((copy / "test" / "neg").iterdir())
    (copy / "test" / "neg" / "99999_1.txt").symlink_to(extra.resolve())
    args = ["--scale", "smoke", "--quiet", "--data-dir", tmp_path / "data"]
    code, stdout, stderr = cli("run", "logreg_imdb", "--out", tmp_path / "out", *args)
    assert code == 2 and stdout == "", stderr
    assert stderr == (f"adamrepro: error: IMDB: train/pos (12,499 reviews), test/neg (12,501 "
                      f"reviews) in {copy}, where the official label folders hold 12,500 "
                      f"reviews each; put the official aclImdb in its place (deleted, it is "
                      f"downloaded and extracted again), or pass --unverified-data (dataset "
                      f"option verify: false) for a copy you trust\n")
    assert not (tmp_path / "out").exists()
    code, stdout, stderr = cli("run", "logreg_imdb", "--out", tmp_path / "out", *args,
                               "--unverified-data")
    assert code == 0, stderr
    records = [json.loads(path.read_text())
               for path in (tmp_path / "out" / "logreg_imdb" / "runs").glob("*.json")]
    assert records and all(r["provenance"]["data_verified"] is False for r in records)


# vocabulary: labeledBow.feat. The copies of aclImdb this project is given lack the official
# .feat files, so the tests write them from the real reviews, each counted as `vocabulary:
# imdb.vocab` counts it: the two vocabularies must then give the same tensors.
FEAT = "labeledBow.feat"  # the file's name, spelled out: the fixtures work without the reader


def _feat_line(rating: int, counts: Counter, index: dict[str, int]) -> str:
    """A review's line in the official format: `rating idx:count ...`, idx increasing."""
    pairs = sorted((index[word], count) for word, count in counts.items() if word in index)
    return " ".join([str(rating), *(f"{idx}:{count}" for idx, count in pairs)]) + "\n"


def _linked_imdb(data_dir: Path, root: Path) -> Path:
    """A data folder whose aclImdb/ links the real review folders and imdb.vocab, with its
    split folders its own (for the .feat files)."""
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            (root / "aclImdb" / split).mkdir(parents=True, exist_ok=True)
            (root / "aclImdb" / split / label).symlink_to(data_dir / "aclImdb" / split / label)
    (root / "aclImdb" / "imdb.vocab").symlink_to(data_dir / "aclImdb" / "imdb.vocab")
    return root


@pytest.fixture(scope="session")
def feat_dir(data_dir, tmp_path_factory) -> Path:
    """The real data with labeledBow.feat files made from all 50,000 reviews (about 15 s):
    idx over the whole imdb.vocab, as the official ones, each split's positive reviews
    first, then its negative ones, each by id (the official files' order)."""
    root = _linked_imdb(data_dir, tmp_path_factory.mktemp("feat"))
    words = imdb.dataset_vocabulary(root / "aclImdb", imdb.OFFICIAL_VOCAB_WORDS)
    index = {word: idx for idx, word in enumerate(words)}
    for split in ("train", "test"):
        lines = []
        for label in ("pos", "neg"):
            folder = root / "aclImdb" / split / label
            for review_id, rating in sorted(imdb._review_name(name)
                                            for name in os.listdir(folder)):
                text = (folder / f"{review_id}_{rating}.txt").read_text(encoding="utf-8")
                lines.append(_feat_line(rating, Counter(imdb.tokenize_like_the_dataset(text)),
                                        index))
        (root / "aclImdb" / split / FEAT).write_text("".join(lines))
    return root


def test_labeled_bow_feat_gives_what_imdb_vocab_rebuilds_from_the_text(feat_dir, data_dir):
    """The .feat counts, read, are the imdb.vocab path's tensors exactly: features (idx <
    vocab_size, clipped, uint8), labels from the ratings, the same rows in the same order
    (negative first), the same subsets, binary alike."""
    def both(**options):
        return (imdb.load(imdb.Options(vocabulary="labeledBow.feat", **options), feat_dir),
                imdb.load(imdb.Options(vocabulary="imdb.vocab", **options), data_dir))

    for options in ({}, {"features": "binary", "vocab_size": 5000, "train_size": 3000,
                         "test_size": 1000}):
        read, rebuilt = both(**options)
        for split in ("train", "test"):
            for key in ("x", "y"):
                got, expected = getattr(read, split)[key], getattr(rebuilt, split)[key]
                assert got.dtype == expected.dtype and torch.equal(got, expected), (options,
                                                                                    split, key)
        assert read.num_classes == rebuilt.num_classes == 2
    assert read.train_x.shape == (3000, 5000) and read.train_x.max() == 1
    full, _ = both()
    assert full.train_x.shape == (25000, 10000) and full.train_x.dtype == torch.uint8
    assert full.train_y[:12500].eq(0).all() and full.train_y[12500:].eq(1).all()


def _feat_copy(feat_dir: Path, root: Path, train_lines: list[str] | None = None) -> Path:
    """A data folder linking feat_dir's reviews, imdb.vocab and test/labeledBow.feat, with
    train/labeledBow.feat's lines `train_lines` (by default the real ones)."""
    _linked_imdb(feat_dir, root)
    official = feat_dir / "aclImdb"
    (root / "aclImdb" / "test" / FEAT).symlink_to(official / "test" / FEAT)
    if train_lines is None:
        train_lines = (official / "train" / FEAT).read_text().splitlines(True)
    (root / "aclImdb" / "train" / FEAT).write_text("".join(train_lines))
    return root


def test_labeled_bow_feat_missing_is_one_line_naming_both_fixes(cli, data_dir, tmp_path):
    """The copies here lack the .feat files: a config that asks for them is refused in one
    line, exit 2, through the CLI: the official archive has them, or imdb.vocab rebuilds the
    counts from the text."""
    config = tmp_path / "feat.yaml"
    config.write_text(CONFIG.read_text().replace("vocabulary: imdb.vocab",
                                                 "vocabulary: labeledBow.feat"))
    assert "vocabulary: labeledBow.feat" in config.read_text()
    code, out, err = cli("run", config, "--scale", "smoke", "--out", tmp_path / "out",
                         "--quiet", "--data-dir", data_dir)
    root = data_dir / "aclImdb"
    assert code == 2 and out == "", err
    assert err == (f"adamrepro: error: IMDB: {root / 'train' / 'labeledBow.feat'}, "
                   f"{root / 'test' / 'labeledBow.feat'} are missing (dataset option "
                   f"vocabulary: labeledBow.feat reads them); the official aclImdb_v1.tar.gz "
                   f"has them: put them in place from it, or use vocabulary: imdb.vocab to "
                   f"rebuild the counts from the review texts\n")


def test_a_config_reading_labeled_bow_feat_is_accepted(cli, tmp_path):
    config = tmp_path / "feat.yaml"
    config.write_text(CONFIG.read_text().replace("vocabulary: imdb.vocab",
                                                 "vocabulary: labeledBow.feat"))
    code, out, err = cli("run", config, "--scale", "smoke", "--dry-run", "--out", tmp_path)
    assert code == 0 and err == "" and "total " in out, err


@pytest.mark.parametrize("line, said", [
    ("9 0:3 1:x\n", "line 2 is not `rating idx:count ...` ('9 0:3 1:x')"),
    ("9 0:3 1:2:4\n", "line 2 is not `rating idx:count ...` ('9 0:3 1:2:4')"),
    ("\n", "line 2 is not `rating idx:count ...` ('')"),
    ("9 0:3 caf\xe9:1\n", "line 2 is not `rating idx:count ...` ('9 0:3 caf\xe9:1')"),
    ("5 0:3 1:1\n", "line 2 has rating 5, neither negative (1-4) nor positive (7-10) as "
                    "every review of the dataset is"),
    ("11 0:3\n", "line 2 has rating 11, neither negative (1-4) nor positive (7-10)"),
    ("6 0:3\n", "line 2 has rating 6, neither negative (1-4) nor positive (7-10)"),
    ("0 0:3\n", "line 2 has rating 0, neither negative (1-4) nor positive (7-10)"),
    ("9 0:3 89527:1\n", "line 2 has idx 89527, beyond the 89,527 words of "),
    ("9 0:3 7:1 0:2\n", "line 2 has idx 0 twice"),
    ("9 0:3 7:1 7:2\n", "line 2 has idx 7 twice"),  # in a row: no idx decreases
    # a count of 0 is no word of the review (`features: binary` read it as one)
    ("9 0:3 7:0\n", "line 2 is not `rating idx:count ...` ('9 0:3 7:0')"),
])
def test_a_damaged_labeled_bow_feat_line_is_named_with_its_file_and_line(
        line, said, feat_dir, tmp_path):
    """Each refusal names the file and the line, whatever `verify` says: such a file is not
    the dataset's (an idx beyond imdb.vocab's 89,527 words counts from 0)."""
    lines = (feat_dir / "aclImdb" / "train" / FEAT).read_text().splitlines(True)
    lines[1] = line
    root = _feat_copy(feat_dir, tmp_path, lines)
    path = root / "aclImdb" / "train" / FEAT
    if "\xe9" in line:
        path.write_bytes("".join(lines).encode("latin-1"))
    for verify in (True, False):
        with pytest.raises(UserError) as err:
            imdb.load(imdb.Options(vocabulary="labeledBow.feat", verify=verify), root)
        message = str(err.value)
        assert message.startswith(f"IMDB: {path} {said}"), message
        assert message.endswith("put the official aclImdb/train/labeledBow.feat back" + (
            ", with its imdb.vocab" if "idx 89527" in said else "")) and "\n" not in message


def test_of_several_damaged_labeled_bow_feat_lines_the_first_is_named(feat_dir, tmp_path):
    """Rows are read negative reviews first, the file's positive ones first: a positive
    line and a later negative one, both damaged, are named by the earlier in the file,
    for an idx beyond imdb.vocab as for one twice in a line."""
    lines = (feat_dir / "aclImdb" / "train" / FEAT).read_text().splitlines(True)
    for damage, said in ((("9 0:3 89528:1\n", "1 0:3 89530:1\n"), "has idx 89528, beyond"),
                         (("9 0:3 5:1 5:2\n", "1 0:3 8:1 8:2\n"), "has idx 5 twice")):
        lines[1], lines[13000] = damage  # a positive line 2, a negative line 13,001
        root = _feat_copy(feat_dir, tmp_path / said.split()[-1], lines)
        with pytest.raises(UserError) as err:
            imdb.load(imdb.Options(vocabulary="labeledBow.feat"), root)
        assert str(err.value).startswith(
            f"IMDB: {root / 'aclImdb' / 'train' / FEAT} line 2 {said}"), str(err.value)


def test_a_labeled_bow_feat_of_other_counts_is_refused_unless_trusted(feat_dir, tmp_path):
    """Each file must hold the official 25,000 lines, 12,500 of each label, as the label
    folders their 12,500 reviews; `verify: false` reads it, the lines as they are. A line
    without counts is a review without one word of the vocabulary, no error."""
    lines = (feat_dir / "aclImdb" / "train" / FEAT).read_text().splitlines(True)
    # the first positive review gone, the last negative one twice, then one of no words
    lines = [*lines[1:], lines[-1], "3\n"]
    root = _feat_copy(feat_dir, tmp_path, lines)
    with pytest.raises(UserError) as err:
        imdb.load(imdb.Options(vocabulary="labeledBow.feat"), root)
    assert str(err.value) == (
        f"IMDB: train/labeledBow.feat (25,001 lines: 12,499 positive, 12,502 negative) in "
        f"{root / 'aclImdb'}, where the official files hold 25,000 lines, 12,500 of each "
        f"label; put the official files in their place, or pass --unverified-data (dataset "
        f"option verify: false) for a copy you trust")
    trusted = imdb.load(imdb.Options(vocabulary="labeledBow.feat", verify=False), root)
    official = imdb.load(imdb.Options(vocabulary="labeledBow.feat"), feat_dir)
    assert torch.bincount(trusted.train_y).tolist() == [12502, 12499]
    assert torch.equal(trusted.train_x[:12500], official.train_x[:12500])  # negative first
    assert torch.equal(trusted.train_x[12500], official.train_x[12499])  # the line twice
    assert not trusted.train_x[12501].any()  # the review of no words
    assert torch.equal(trusted.train_x[12502:], official.train_x[12501:])
    assert torch.equal(trusted.test_x, official.test_x)


def test_fetch_and_unverified_data_count_the_labeled_bow_feat_lines_too(feat_dir, tmp_path):
    """Where the .feat files are there, one of other counts is not the official data:
    `adamrepro fetch` says so (`unofficial`), and --unverified-data turns `verify` off
    (`official`; it left the config alone for the intact review folders, and the run was
    refused all the same). Not through `fetch` itself: it would tokenize the copy's 50,000
    reviews twice for its caches."""
    assert imdb.unofficial(feat_dir / "aclImdb") == "" and imdb.official(feat_dir)
    lines = (feat_dir / "aclImdb" / "train" / FEAT).read_text().splitlines(True)
    root = _feat_copy(feat_dir, tmp_path, lines[:-1])
    said = ("train/labeledBow.feat (24,999 lines: 12,500 positive, 12,499 negative) where "
            "the official files hold 25,000 lines, 12,500 of each label")
    assert imdb.unofficial(root / "aclImdb") == said and not imdb.official(root)


def test_a_labeled_bow_feat_without_a_label_is_refused_even_unverified(feat_dir, tmp_path):
    """`verify: false` waives the counts, not a split without one of its labels (as an empty
    label folder is refused whatever `verify` says): an empty train file gave a
    ZeroDivisionError mid-run, an empty test file a KeyError."""
    lines = (feat_dir / "aclImdb" / "train" / FEAT).read_text().splitlines(True)
    for kept, missing in ((lines[:12500], "negative"), ([], "negative"),
                          (lines[12500:], "positive")):
        root = _feat_copy(feat_dir, tmp_path / f"{missing}{len(kept)}", kept)
        with pytest.raises(UserError) as err:
            imdb.load(imdb.Options(vocabulary="labeledBow.feat", verify=False), root)
        assert str(err.value) == (
            f"IMDB: {root / 'aclImdb' / 'train' / FEAT} holds no {missing} review; put the "
            f"official aclImdb/train/labeledBow.feat back")


def test_official_reads_for_a_labeled_bow_feat_load_only_what_it_reads(feat_dir, tmp_path):
    """A .feat load never counts the review folders: one that lost a review leaves such a
    config's `--unverified-data` alone (other run ids and `data_verified: false` before),
    while the text paths count them. A first field too long for int() is no rating, not a
    ValueError out of fetch and --unverified-data."""
    root = _feat_copy(feat_dir, tmp_path / "lost")
    pos = root / "aclImdb" / "train" / "pos"
    pos.unlink()  # a link to the real folder: a folder of links, less one
    pos.mkdir()
    real = feat_dir / "aclImdb" / "train" / "pos"
    for name in sorted(os.listdir(real))[1:]:
        (pos / name).symlink_to(real / name)
    assert imdb.official(root, imdb.Options(vocabulary="labeledBow.feat"))
    for vocabulary in ("imdb.vocab", "ours"):
        assert not imdb.official(root, imdb.Options(vocabulary=vocabulary))
    lines = (feat_dir / "aclImdb" / "train" / FEAT).read_text().splitlines(True)
    long = _feat_copy(feat_dir, tmp_path / "long", ["9" * 5000 + " 0:1\n", *lines[1:]])
    assert not imdb.official(long, imdb.Options(vocabulary="labeledBow.feat"))
    assert "train/labeledBow.feat (25,000 lines: 12,499 positive" in imdb.unofficial(
        long / "aclImdb")

