"""The near-duplicate index against brute force at scale: same answers, row after row."""
import random

from stillroom.core.quality import NearDupIndex, jaccard, shingles


def test_index_matches_brute_force_on_thousands_of_rows():
    rng = random.Random(11)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))
             for _ in range(400)]
    texts = []
    for _ in range(1200):
        if texts and rng.random() < 0.3:
            # an edit of an earlier row: from a near copy (one word) to a loose one (several)
            words = rng.choice(texts).split()
            for _ in range(rng.choice((1, 1, 2, 4))):
                words[rng.randrange(len(words))] = rng.choice(vocab)
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(6, 18))))
    for threshold in (0.8, 0.5):
        index = NearDupIndex(threshold)
        sets = []
        found_dups = 0
        for text in texts:
            grams = shingles(text)
            brute = max((jaccard(grams, s) for s in sets), default=0.0)
            match = index.nearest(text)
            assert (match is not None) == (brute >= threshold), (text, brute)
            if match is not None:
                found_dups += 1
                assert abs(match.score - brute) < 1e-9      # the best match, not just any match
            index.add(text)
            sets.append(grams)
        assert found_dups > 100
