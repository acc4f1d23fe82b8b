"""lm.data and lm.corpus: vocabulary and stream round-trips on a fixture in WikiText format, the
cache key, errors, training blocks and resume, context windows, the embedded corpus."""
import collections
import math
import os
import shutil

import numpy as np
import pytest

from lm import corpus as corpus_lib
from lm import data

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixture")


def _read(split, folder=FIXTURE):
    with open(os.path.join(folder, f"wiki.{split}.tokens"), encoding="utf-8") as f:
        return f.read()


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "cache")


def test_word_vocabulary_and_streams_round_trip(cache):
    corpus = data.prepare(FIXTURE, cache_dir=cache)
    vocab = corpus.vocab
    train_lines = _read("train").splitlines()
    counts = collections.Counter(t for line in train_lines for t in line.split())
    counts[data.EOS] = len(train_lines)
    assert len(vocab) == len(counts) + 1 and vocab.tokens[0] == data.PAD
    assert [vocab.counts[vocab.index[t]] for t in counts] == list(counts.values())
    assert list(vocab.counts[1:]) == sorted(vocab.counts[1:], reverse=True)  # by frequency
    assert vocab.tokens[1] == "the"
    assert vocab.counts.sum() == corpus.info["splits"]["train"]["tokens"]
    for split in data.SPLITS:
        text = _read(split)
        stream = corpus.stream(split)
        assert isinstance(stream, np.memmap) and stream.dtype == np.int32
        assert len(stream) == sum(len(line.split()) + 1 for line in text.splitlines())
        assert (stream == vocab.eos_id).sum() == len(text.splitlines())
        normalised = "".join(" ".join(line.split()) + "\n" for line in text.splitlines())
        assert vocab.decode(stream) == normalised
    # Saved beside the streams, and read back identically.
    saved = data.Vocabulary.load(os.path.join(corpus.path, "vocab.txt"))
    assert saved.tokens == vocab.tokens and (saved.counts == vocab.counts).all()
    np.testing.assert_array_equal(vocab.encode("the tide\nmill"),
                                  [vocab.index["the"], vocab.index["tide"], vocab.eos_id,
                                   vocab.index["mill"]])


def test_byte_tokenizer_round_trips_raw_text(cache):
    corpus = data.prepare(FIXTURE, tokenizer="byte", cache_dir=cache)
    assert len(corpus.vocab) == 257
    for split in data.SPLITS:
        text = _read(split)
        assert corpus.vocab.decode(corpus.stream(split)) == text
        assert corpus.words(split) == sum(len(line.split()) + 1 for line in text.splitlines())
    assert corpus.vocab.counts[ord("e") + 1] == _read("train").encode().count(b"e")


def test_the_cache_is_reused_and_keyed_by_the_files(tmp_path, cache):
    folder = tmp_path / "corpus"
    shutil.copytree(FIXTURE, folder)
    first = data.prepare(str(folder), cache_dir=cache)
    assert data.prepare(str(folder), cache_dir=cache).path == first.path  # reused
    with open(folder / "wiki.train.tokens", "a", encoding="utf-8") as f:
        f.write(" A new word : sluicegate . \n")
    second = data.prepare(str(folder), cache_dir=cache)
    assert second.path != first.path and "sluicegate" in second.vocab.index
    assert "sluicegate" not in data.Corpus(first.path).vocab.index  # the old entry is untouched
    assert data.prepare(str(folder), tokenizer="byte", cache_dir=cache).path != second.path


def test_errors_name_the_files(tmp_path, cache):
    with pytest.raises(data.DataError, match=r"does not exist; expected wiki\.train\.tokens, "
                                             r"wiki\.valid\.tokens, wiki\.test\.tokens"):
        data.prepare(str(tmp_path / "nowhere"), cache_dir=cache)
    folder = tmp_path / "corpus"
    shutil.copytree(FIXTURE, folder)
    os.remove(folder / "wiki.test.tokens")
    with pytest.raises(data.DataError, match="lacks wiki.test.tokens"):
        data.prepare(str(folder), cache_dir=cache)
    open(folder / "wiki.test.tokens", "w").close()
    with pytest.raises(data.DataError, match=r"wiki.test.tokens is empty: the test split"):
        data.prepare(str(folder), cache_dir=cache)
    with open(folder / "wiki.test.tokens", "w", encoding="utf-8") as f:
        f.write(" \n = Dover = \n the mill \n the windmill \n")
    with pytest.raises(data.DataError, match=r"wiki.test.tokens line 4: token 'windmill' is not "
                                             r"in the vocabulary .*unknown='unk'"):
        data.prepare(str(folder), cache_dir=cache)
    # nothing half-written (the cache folder, made for the build, is gone again)
    assert not os.path.exists(cache) or not [p for p in os.listdir(cache) if p[0] != "."]
    with open(folder / "wiki.train.tokens", "a", encoding="utf-8") as f:
        f.write(" an <unk> word \n")
    corpus = data.prepare(str(folder), unknown="unk", cache_dir=cache)
    assert corpus.vocab.decode(corpus.stream("test")).splitlines()[-1] == "the <unk>"
    with pytest.raises(data.DataError, match="config.data.tokenizer"):
        data.prepare(str(folder), tokenizer="bpe", cache_dir=cache)


def test_training_blocks_are_deterministic_sharded_and_resumable(cache):
    stream = data.prepare(FIXTURE, cache_dir=cache).stream("train")  # 263 tokens
    seq_len, batch = 16, 3
    blocks = data.TrainBlocks(stream, seq_len, batch, seed=7)
    assert blocks.num_blocks == (len(stream) - 1) // seq_len == 16
    batches = [next(blocks) for _ in range(12)]  # 36 rows: more than two epochs
    for b in batches:
        np.testing.assert_array_equal(b["inputs"][:, 1:], b["targets"][:, :-1])
        assert b["inputs"].shape == b["weights"].shape == (batch, seq_len)
    starts = [int(np.flatnonzero(np.all(
        np.lib.stride_tricks.sliding_window_view(stream, seq_len)[::seq_len] == row, axis=1))[0])
        for b in batches for row in b["inputs"]]
    assert sorted(starts[:16]) == list(range(16)) and sorted(starts[16:32]) == list(range(16))
    assert starts[:16] != starts[16:32]  # reshuffled each epoch
    # Resume: a new iterator set to a saved state continues with exactly the next batches.
    again = data.TrainBlocks(stream, seq_len, batch, seed=7)
    again.set_state(batches and {"batches": 5})
    for b in batches[5:]:
        np.testing.assert_array_equal(next(again)["inputs"], b["inputs"])
    assert again.get_state() == {"batches": 12}
    # Two hosts: disjoint halves of the same global batch.
    whole = next(data.TrainBlocks(stream, seq_len, 4, seed=7))["inputs"]
    halves = [next(data.TrainBlocks(stream, seq_len, 2, seed=7, shard_index=i, shard_count=2))
              for i in (0, 1)]
    np.testing.assert_array_equal(np.concatenate([h["inputs"] for h in halves]), whole)
    with pytest.raises(data.DataError, match="config.seq_len"):
        data.TrainBlocks(stream, 400, 1, 0)


@pytest.mark.parametrize("seq_len,context", [(16, 10), (16, 0), (64, 48), (400, 100)])
def test_context_windows_score_every_token_once_with_its_context(seq_len, context, cache):
    corpus = data.prepare(FIXTURE, cache_dir=cache)
    stream = np.asarray(corpus.stream("train"))
    eos = corpus.vocab.eos_id
    previous = np.concatenate([[eos], stream[:-1]])
    scored = np.zeros(len(stream), int)
    for shard in (0, 1):
        for batch in data.eval_batches(stream, seq_len=seq_len, context=context, batch_size=3,
                                       bos_id=eos, shard_index=shard, shard_count=2):
            for inputs, targets, weights in zip(batch["inputs"], batch["targets"],
                                                batch["weights"]):
                real = np.flatnonzero(targets != data.PAD_ID)
                if not len(real):
                    assert not weights.any()
                    continue
                start = int(np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(
                    stream, len(real)) == targets[real], axis=1))[0])
                np.testing.assert_array_equal(inputs[real], previous[start:start + len(real)])
                for j in np.flatnonzero(weights):
                    position = start + j
                    scored[position] += 1
                    assert j >= min(context, position)  # context tokens before it in the window
    assert (scored == 1).all()
    with pytest.raises(data.DataError, match="config.eval_context"):
        data.num_windows(100, 16, 16)


def test_unigram_baseline_by_hand(cache):
    corpus = data.prepare(FIXTURE, cache_dir=cache)
    counts = corpus.vocab.counts
    probs = (counts + 1) / (counts.sum() + len(counts) - 1)
    valid = corpus.stream("valid")
    want = -np.mean([math.log(probs[t]) for t in valid])
    assert data.unigram_nll(corpus, "valid") == pytest.approx(want, rel=1e-12)


def test_embedded_corpus_is_in_wikitext_format(tmp_path, cache):
    folder = corpus_lib.write(str(tmp_path / "standin"), sources=("topics",))
    train = _read("train", folder)
    lines = train.splitlines()
    assert all(line.startswith(" ") and line.endswith(" ") for line in lines)
    titles = [line for line in lines if line.startswith(" = ") and not line.startswith(" = = ")]
    assert len(titles) > 30 and all(line.endswith(" = ") for line in titles)
    assert any(line.startswith(" = = ") for line in lines) and " @-@ " in train
    assert " <unk> " in train and "``" not in train
    # valid / test need no word beyond the training vocabulary (rare words became <unk>).
    corpus = data.prepare(folder, cache_dir=cache)
    assert corpus.info["splits"]["valid"]["tokens"] > 100 and len(corpus.vocab) > 1000
    assert corpus_lib.tokenize("It isn't state-of-the-art: 1,000 runs at 3.5 s.") == [
        "It", "is", "n't", "state", "@-@", "of", "@-@", "the", "@-@", "art", ":", "1", "@,@",
        "000", "runs", "at", "3", "@.@", "5", "s", "."]
